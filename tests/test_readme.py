"""The manual cannot drift: every shell command in README.md runs as written, made fast by
overrides appended at its end (a tiny training budget, a temporary log_dir), and fails this test
when it no longer works. Commands that cannot run here are listed in SKIPPED with the reason."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import forked_cli
import pytest
from conftest import REAL_CACHE, REPO, assert_ok, primary_setup

README = REPO / "README.md"
SHARED_DATA = REPO.parent / "shared" / "data"

# Commands that do not run in a test, by a piece of their text, with why.
SKIPPED = {
    "make install": "CI runs it before the tests; it rebuilds .venv",
    "make test": "the suite this test is part of (CI runs it: .ci/run)",
    "make tensorboard": "a server that runs until stopped (checked in a browser, issue 15)",
    "submitit_slurm": "needs a SLURM cluster",
    "make speedrun": "a benchmark of three fresh full runs",
}
# Appended to every training command: a few steps, one val/test batch, files in the test's folder.
TINY = [
    "data.train_subset=64",
    "data.batch_size=32",
    "data.eval_batch_size=64",
    "data.eval_train_max=0",
    "trainer.max_steps=2",
    "trainer.max_epochs=1",
    "++trainer.limit_val_batches=1",
    "++trainer.limit_test_batches=1",
    "++trainer.val_check_interval=null",
    "++trainer.check_val_every_n_epoch=1",
    "callbacks.progress_bar=null",
]
# Sweeps shrunk by overriding their sweep values last (Hydra: the last value of a key wins).
SHRINK = {
    "seed=0,1": "seed=0",
    "EXP=": "seed=0",
    "n_trials=": "hydra.sweeper.n_trials=2",
    "make study": "--max-seeds 1",  # one round: the claims cannot be decided on 2 steps anyway
}


def readme_commands() -> list[str]:
    """Shell commands of README.md's bash blocks (continuations joined, comments dropped), and the
    `$ command` lines of its transcripts."""
    commands = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", README.read_text(), re.S):
        text = body.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.strip()
            if lang == "bash" and line and not line.startswith("#"):
                commands.append(re.sub(r"\s+#.*$", "", line).strip())
            elif not lang and line.startswith("$ "):
                commands.append(line[2:].strip())
    return commands


def _skip_reason(command: str) -> str | None:
    return next((why for key, why in SKIPPED.items() if key in command), None)


COMMANDS = readme_commands()


def test_the_readme_has_commands_and_every_skip_is_used():
    assert len(COMMANDS) >= 15
    used = {key for key in SKIPPED for c in COMMANDS if key in c}
    assert used == set(SKIPPED), (
        f"SKIPPED names commands the README no longer has: {set(SKIPPED) - used}"
    )


def test_the_readme_is_a_manual_and_its_links_resolve():
    """The README stays short (results live in docs/results/), and no relative link in it or in the
    docs it sends readers to points at a file that is not there."""
    assert len(README.read_text().splitlines()) <= 450
    docs = [p for p in sorted((REPO / "docs").rglob("*.md")) if "history/20" not in p.as_posix()]
    pages = [README, *docs]  # not the reports under history/: kept as they were generated
    broken = [
        f"{page.relative_to(REPO)}: {target}"
        for page in pages
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert len(pages) >= 4 and broken == []


def _fast(command: str, tmp: Path) -> str:
    """The command with the tiny overrides appended (inside ARGS for make)."""
    words = shlex.split(command)
    if "--cfg" in words or words[-1:] == ["--help"]:
        return command
    tiny = TINY
    if _expected_error(command):  # a refused size stays the command's own: no tiny data over it
        tiny = [t for t in TINY if not t.startswith("data.")]
    extra = [*tiny, f"log_dir={tmp / 'logs'}", f"data.cache_dir={REAL_CACHE}"]
    extra += [v for k, v in SHRINK.items() if k in command]
    extra += _primary_setup(words)
    if words[0] == "make":
        if words[1] == "report":  # the sweep it reports on ran with the tiny overrides: a variant
            return command.replace("logs/", f"{tmp / 'logs'}/")
        args = next((w.split("=", 1)[1] for w in words if w.startswith("ARGS=")), "")
        rest = [w for w in words if not w.startswith("ARGS=")]
        return shlex.join([*rest, f"ARGS={' '.join([args, *extra]).strip()}"])
    return shlex.join([*words, *extra])


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The command through the shell; `<venv python> -m ablate.<module> ...`, also as the recipe
    that `make` runs, in a process forked from one that has imported torch and Lightning already
    (the same interpreter, arguments and environment: only the ~7 s of imports are shared;
    tests/forked_cli.py)."""
    words = shlex.split(command)
    if words[0] == "make" and (recipe := _make_recipe(words, env)) is not None:
        guards, program, make_env = recipe
        for guard in guards:  # make's `test -n "$(EXP)" || { usage; exit 2; }` lines
            if (checked := subprocess.run(guard, shell=True, cwd=REPO, env=make_env,
                                          capture_output=True, text=True)).returncode:  # fmt: skip
                return checked
        return forked_cli.run_program(program, REPO, make_env, timeout=600)
    if words[1:2] == ["-m"] and words[2].startswith("ablate.") and _is_venv_python(words[0]):
        return forked_cli.run_program(words[1:], REPO, env, timeout=600)
    return subprocess.run(
        command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def _is_venv_python(path: str) -> bool:
    return REPO / path == Path(sys.executable)


def _make_recipe(words: list[str], env: dict[str, str]) -> tuple[list[str], list[str], dict] | None:
    """What `make <target> VAR=...` would run (`make -n`): its guard lines, its one `-m ablate.<module>`
    program and the environment make gives it (its exports and the command line's variables);
    None for a recipe of another shape, which then runs through make itself."""
    run = lambda *a: subprocess.run(["make", "-s", "--no-print-directory", *a], cwd=REPO, env=env,  # noqa: E731
                                    capture_output=True, text=True)  # fmt: skip
    dry = run("-n", *words[1:])
    *guards, last = dry.stdout.splitlines() or [""]
    program = shlex.split(last)
    if dry.returncode or program[1:2] != ["-m"] or not _is_venv_python(program[0]):
        return None
    if not all(g.startswith("test -n ") for g in guards) or not program[2].startswith("ablate."):
        return None
    variables = [w for w in words[1:] if "=" in w]
    printed = run("--eval", "_recipe_env: ; @env -0", "_recipe_env", *variables).stdout
    make_env = dict(item.split("=", 1) for item in printed.split("\0") if "=" in item)
    return guards, program[1:], make_env


def _primary_setup(words: list[str]) -> list[str]:
    """For `make study EXP=<preset> [SCALE=quick]`: its open grid at the declared primary setup, one
    cell per arm (the grid's panel has its own test: test_panel.py)."""
    given = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    if words[:2] != ["make", "study"] or "EXP" not in given:
        return []
    return primary_setup(given["EXP"] + ("_quick" if given.get("SCALE") == "quick" else ""))


def _expected_error(command: str) -> str | None:
    """The `error:` line a README transcript shows right after the command, if any."""
    lines = README.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"$ {command}" and i + 1 < len(lines):
            nxt = lines[i + 1].strip()
            return nxt if nxt.startswith("error:") else None
    return None


@pytest.mark.real_data
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_works_as_written(command, tmp_path_factory):
    if why := _skip_reason(command):
        pytest.skip(why)
    if command.startswith("make sweep"):
        pytest.skip("run by the `make report` case, which reports on this sweep")
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("the README's commands train on the real datasets in ../shared/data")
    tmp = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "MPLBACKEND": "Agg"}
    if command.startswith("make report"):  # reports the sweep of the README's preceding command
        sweep = next(c for c in COMMANDS if c.startswith("make sweep"))
        assert_ok(_run(_fast(sweep, tmp), env))
        (found,) = (tmp / "logs" / "experiments").glob("reg_gap_quick*")
        command = command.replace(
            "logs/experiments/reg_gap_quick", f"logs/experiments/{found.name}"
        )
    proc = _run(_fast(command, tmp), env)
    if expected := _expected_error(command):
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert expected in proc.stderr.splitlines()
        assert "Traceback" not in proc.stderr
        return
    assert_ok(proc)

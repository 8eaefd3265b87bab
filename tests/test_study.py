"""ablate.study: seeds only where claims are undecided. Pure logic on made-up verdicts, Hydra's
handling of the restricted rounds (no training), then two tiny real studies through the CLI."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import forked_cli
import pytest
from conftest import REPO, fast_overrides
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ablate.config import SWEPT_ENV, cli_swept_keys, sweep_name
from ablate.report.judge import Comparison, Verdict
from ablate.report.load import study_plan
from ablate.study import (
    Design,
    StudyError,
    blocks,
    cells_to_extend,
    claim_cells,
    planned_looks,
    read_design,
    resolve_budget,
    round_commands,
    seeds_at,
    stop_reason,
)

FACTORS = {"norm": ["none", "batch"], "optim.lr": ["0.01", "0.1", "1.0"]}
PAIRED = Comparison("paired", 3, 0.01, 0.01, 2, 0.4, 0.02)


def verdict(outcome: str, **claim) -> Verdict:
    claim = {"metric": "test/acc", "factor": "norm", "better": "batch", "worse": "none", **claim}
    return Verdict(claim, outcome, "", comparison=PAIRED)


def test_looks_and_seeds_from_the_cap():
    assert planned_looks(3, 10, 2) == 5  # 3, 5, 7, 9, 10 seeds
    assert [len(seeds_at([0, 1, 2], k, 2, 10)) for k in range(1, 6)] == [3, 5, 7, 9, 10]
    assert seeds_at([0, 1, 2], 2, 2, 10) == [0, 1, 2, 3, 4]
    assert planned_looks(2, 3, 2) == 2 and seeds_at([0, 1], 2, 2, 3) == [0, 1, 2]
    assert planned_looks(5, 3, 2) == 1 and seeds_at([0, 1, 2, 3, 4], 1, 2, 3) == [0, 1, 2, 3, 4]


def test_only_the_cells_of_undecided_claims_are_extended():
    where = verdict("inconclusive", where={"optim.lr": 0.1})  # 0.1 matches "0.1" numerically
    assert cells_to_extend([where], FACTORS) == [("none", "0.1"), ("batch", "0.1")]
    # no `where`: every level of the other factor (the claim pairs over it)
    assert len(cells_to_extend([verdict("inconclusive")], FACTORS)) == 6
    assert cells_to_extend([verdict("supported"), verdict("no effect")], FACTORS) == []
    by = verdict("inconclusive", by={"key": "optim.lr", "from": 0.01, "to": 1.0})
    assert set(claim_cells(by.claim, FACTORS)) == {
        (n, lr) for n in ("none", "batch") for lr in ("0.01", "1.0")
    }
    two = [where, verdict("inconclusive", better="none", worse="batch", where={"optim.lr": 1})]
    assert cells_to_extend(two, FACTORS) == [
        ("none", "0.1"),
        ("none", "1.0"),
        ("batch", "0.1"),
        ("batch", "1.0"),
    ]  # fmt: skip  (grid order)
    # malformed claims get no seeds; a claim that only lacked runs does
    lacking = Verdict({"text": "x", "factor": "norm"}, "inconclusive", "claim lacks metric")
    few = Verdict(where.claim, "inconclusive", "fewer than 2 usable runs on a side")
    assert cells_to_extend([lacking], FACTORS) == []
    assert cells_to_extend([few], FACTORS) == [("none", "0.1"), ("batch", "0.1")]


def test_stop_rule():
    undecided, decided = verdict("inconclusive"), verdict("supported")
    cells = [("none", "0.1")]
    assert stop_reason([decided], 1, 4, []) == "every claim decided"
    assert stop_reason([decided, undecided], 2, 4, cells) is None
    assert stop_reason([decided, undecided], 4, 4, cells).startswith("seed cap")
    assert stop_reason([undecided], 1, 4, cells, elapsed_h=2.5, max_hours=2).startswith("wall-time")
    assert stop_reason([undecided], 1, 4, cells, elapsed_h=1, max_hours=2) is None
    assert stop_reason([undecided], 1, 4, []).startswith("more seeds cannot")
    assert stop_reason([], 1, 4, cells) == "no claims to judge"


def test_a_preset_declares_its_seed_budget_and_the_flags_override_it(tmp_path):
    design = read_design("experiment=reg_gap_quick", [f"log_dir={tmp_path}", "+study.max_seeds=14"])
    assert design.budget == {"max_seeds": 14}
    assert resolve_budget(design.budget) == (14, 2, None)  # add and max_hours: the defaults
    assert resolve_budget(design.budget, max_seeds=6, max_hours=0.5) == (6, 2, 0.5)
    assert resolve_budget({}) == (10, 2, None)
    assert resolve_budget({"max_seeds": None, "add": 3}) == (10, 3, None)  # null: not declared
    # make studies' 0.2 h applies only where neither the flag nor the preset sets a cap
    assert resolve_budget({}, default_max_hours=0.2) == (10, 2, 0.2)
    assert resolve_budget({"max_hours": 0.7}, default_max_hours=0.2) == (10, 2, 0.7)
    assert resolve_budget({"max_hours": 0.7}, max_hours=0.1, default_max_hours=0.2)[2] == 0.1
    assert read_design("experiment=reg_gap_quick", [f"log_dir={tmp_path}"]).budget == {}


def test_the_command_line_resolves_the_wall_time_cap(tmp_path, monkeypatch):
    # python -m ablate.study's flags reach the study: --max-hours > study.max_hours > the default
    import ablate.study as study_cli

    budgets = []

    class Recorder:
        def __init__(self, design, max_seeds, add, max_hours, *rest):
            budgets.append((max_seeds, add, max_hours))

        def run(self) -> None:
            pass

    monkeypatch.setattr(study_cli, "Study", Recorder)
    base = ["experiment=bn_lr", f"log_dir={tmp_path}", "--default-max-hours", "0.2"]
    assert study_cli.main(base) == 0
    assert study_cli.main([*base, "+study.max_hours=0.7"]) == 0
    assert study_cli.main([*base, "+study.max_hours=0.7", "--max-hours", "0.1"]) == 0
    assert [b[2] for b in budgets] == [0.2, 0.7, 0.1]


def test_blocks_cover_exactly_the_cells():
    cells = [("none", "0.1"), ("batch", "0.1"), ("none", "1.0"), ("batch", "1.0"), ("x", "0.01")]
    grids = blocks(cells)
    covered = [c for g in grids for c in itertools.product(*g)]
    assert sorted(covered) == sorted(cells) and len(covered) == len(set(covered))
    assert [sorted(v) for v in grids[0]] == [["batch", "none"], ["0.1", "1.0"]]


def _jobs(params: dict[str, str], args: list[str]) -> list[str]:
    """Run-folder names Hydra's basic sweeper and conf/train.yaml's subdir give the jobs of `args`."""
    specs = [f"{k}={v}" for k, v in params.items()] + args
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(specs), None)
    root = OmegaConf.create({"hydra": {"sweeper": {"params": params}}})
    os.environ[SWEPT_ENV] = ",".join(sorted(cli_swept_keys(args)))  # what ablate.train sets
    try:
        return sorted(sweep_name(job, root) for job in batches[0])
    finally:
        del os.environ[SWEPT_ENV]


def test_restricted_rounds_replace_the_sweeper_params_and_keep_the_folder_names(tmp_path):
    design = read_design("experiment=bn_lr", [f"log_dir={tmp_path}", "hydra/launcher=basic"])
    assert design.sweep_dir == (tmp_path / "experiments" / "bn_lr").resolve()
    assert design.factors == {"norm": ["none", "batch"], "optim.lr": ["0.01", "0.1", "0.5", "1.0"]}
    assert design.seeds == [0, 1, 2]
    params = {"norm": "none,batch", "optim.lr": "0.01,0.1,0.5,1.0", "seed": "0,1,2"}
    first = _jobs(params, [])
    assert len(first) == 24 and "norm=batch,optim.lr=0.1,seed=0" in first
    missing = {("none", "0.1"): [3, 4], ("batch", "0.1"): [3, 4], ("batch", "1.0"): [3]}
    commands = round_commands(design, missing)
    assert commands[0] == [
        "-m", "experiment=bn_lr", f"log_dir={tmp_path}", "hydra/launcher=basic",
        "norm=none,batch", "optim.lr=0.1", "seed=3,4",
    ]  # fmt: skip
    names = sorted(n for c in commands for n in _jobs(params, c[2:]))
    assert names == [
        "norm=batch,optim.lr=0.1,seed=3",
        "norm=batch,optim.lr=0.1,seed=4",
        "norm=batch,optim.lr=1.0,seed=3",
        "norm=none,optim.lr=0.1,seed=3",
        "norm=none,optim.lr=0.1,seed=4",
    ]
    # a factor swept on the command line stays swept (and in the folder name) with one value
    cli = Design("experiment=x", ["a.b=1,2", "c=3"], tmp_path, {"a.b": ["1", "2"]}, {"seed"}, [0])
    (args,) = round_commands(cli, {("2",): [1]})
    assert args == ["-m", "experiment=x", "c=3", "a.b=choice(2)", "seed=1"]
    assert _jobs({"seed": "0"}, args[2:]) == ["a.b=2,seed=1"]


def test_the_study_plan_lists_every_rounds_runs():
    record = {
        "factors": {"norm": ["none", "batch"]},
        "rounds": [
            {"look": 1, "seeds": [0, 1], "cells": [{"norm": "none"}, {"norm": "batch"}]},
            {"look": 2, "seeds": [0, 1, 2], "cells": [{"norm": "batch"}]},
        ],
    }
    plan = study_plan(record)
    assert plan.expected_runs() == 5 and plan.values == {
        "norm": ["none", "batch"],
        "seed": ["0", "1", "2"],
    }
    assert {"norm": "batch", "seed": "2"} in plan.combos()
    assert {"norm": "none", "seed": "2"} not in plan.combos()


# ------------------------------------------------------------------ tiny real studies
def _study_args(
    data_root: Path, tmp: Path, claim: str, levels: str, key: str = "trainer.log_every_n_steps",
    metric: str = "test/acc", sides: str = "better: 20, worse: 50",
) -> list[str]:  # fmt: skip
    """A 1-factor study on generated MNIST (trainer.log_every_n_steps, the default, changes no result)."""
    fast = [o for o in fast_overrides(data_root, tmp) if not o.startswith("trainer.max_epochs")]
    return [
        "experiment=seeds_default_quick", "--",
        *fast, "trainer.max_steps=3", "data.train_subset=null", "data.eval_train_max=0",
        "logger=none", 'hydra.sweeper.params.seed="0,1"', f"{key}={levels}",
        f"+report.claims=[{{text: same, metric: {metric}, factor: {key}, {sides}{claim}}}]",
        f"hydra.sweep.dir={tmp / 'sweep'}",
    ]  # fmt: skip


def _study(*args: str, new_session: bool = False) -> forked_cli.Started:
    """`python -m ablate.study <args>` (stderr into stdout), forked as the CLI tests fork it."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "MPLBACKEND": "Agg"}
    return forked_cli.Started(["-m", "ablate.study", *args], REPO, env, merge_stderr=True,
                              new_session=new_session)  # fmt: skip


def _finish(proc: forked_cli.Started) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    return out


def _seeds(sweep: Path) -> dict[str, list[int]]:
    cells: dict[str, list[int]] = {}
    for path in sweep.glob("*/summary.json"):
        cell, seed = path.parent.name.rsplit(",seed=", 1)
        cells.setdefault(cell, []).append(int(seed))
    return {c: sorted(s) for c, s in sorted(cells.items())}


def test_an_a_a_study_is_not_tested_and_stops_without_adding_seeds(data_root, tmp_path):
    # A/A: a setting that cannot change a result gives identical runs: "not tested" at look 1
    # (never supported, contradicted or "no effect"), though the declared cap allows 2 more looks
    out = _finish(_study(*_study_args(data_root, tmp_path, "", "20,50"), "+study.max_seeds=8"))
    sweep = tmp_path / "sweep"
    assert _seeds(sweep) == {
        "trainer.log_every_n_steps=20": [0, 1],
        "trainer.log_every_n_steps=50": [0, 1],
    }
    study = json.loads((sweep / "study.json").read_text())
    assert study["stopped"] == "every claim decided or not tested (identical arms)"
    assert (
        len(study["rounds"]) == 1 and study["rounds"][0]["verdicts"][0]["verdict"] == "not tested"
    )
    assert "round 1 (look 1 of 4): 2 seeds in 2 cells; claims 0 decided, 1 not tested" in out
    assert out.count("$ python -m ablate.train") == 1
    summary = (sweep / "report" / "summary.md").read_text()
    assert "## Sequential study" in summary and "**not tested**" in summary
    assert "4 runs planned, 4 found" in summary


def test_an_undecidable_study_stops_at_its_cap_and_resumes_after_sigkill(data_root, tmp_path):
    # margin 0 and 3 seeds at most: never decided (the exact test needs 6). 2 seeds, then +1 to
    # the claim's 2 cells (not to lr 0.07), up to --max-seeds 3. Killed once round 2 has started.
    claim = _study_args(data_root, tmp_path, ", margin: 0", "0.05,0.06,0.07", key="optim.lr",
                        metric="test/loss", sides="better: 0.05, worse: 0.06")  # fmt: skip
    args = ["--max-seeds", "3", "--add", "1", *claim]
    sweep = tmp_path / "sweep"
    first = _study(*args)
    deadline = time.monotonic() + 240
    while not any(sweep.glob("*seed=2")) and first.poll() is None:
        assert time.monotonic() < deadline, "round 2 never started"
        time.sleep(0.05)
    round1 = {
        p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json") if "seed=2" not in str(p)
    }
    first.send_signal(signal.SIGKILL)
    out = first.communicate()[0]
    assert first.returncode == -signal.SIGKILL, out[-4000:]
    assert len(round1) == 6 and "round 2 (look" not in out
    assert all(json.loads(p.read_text())["status"] == "completed" for p in round1)
    again = _finish(_study(*args))
    assert all(p.stat().st_mtime_ns == t for p, t in round1.items())  # finished: not redone
    launched = [line for line in again.splitlines() if "$ python -m ablate.train" in line]
    assert len(launched) <= 1 and all(line.endswith(" seed=2") for line in launched)  # round 2 only
    assert "round 1 (look 1 of 2): 2 seeds in 3 cells; claims 0 decided, 1 undecided" in again
    assert "round 2 (look 2 of 2): 3 seeds in 2 cells, 2 seeds in 1 cell; claims 0 decided" in again
    assert _seeds(sweep) == {
        "optim.lr=0.07": [0, 1],
        "optim.lr=0.05": [0, 1, 2],
        "optim.lr=0.06": [0, 1, 2],
    }
    study = json.loads((sweep / "study.json").read_text())
    assert study["stopped"] == "seed cap (look 2 of 2)" and study["rounds"][1]["added"] == [2]
    summary = (sweep / "report" / "summary.md").read_text()
    assert "Pocock spending at look 2 of 2" in summary
    assert "8 runs planned, 8 found: 8 completed" in summary and "0 missing" in summary
    assert "| same | inconclusive | 3 | — |" in summary  # seeds used per claim


def test_make_studies_runs_each_preset_with_the_extra_args_and_keeps_its_report(tmp_path: Path):
    # scripts/run_studies.sh with a stand-in for python that records its arguments and writes a report
    fake = tmp_path / "fake_python"
    fake.write_text(
        '#!/bin/bash\necho "$@" >> calls.txt\nd=logs/experiments/${3#experiment=}/report\n'
        'mkdir -p $d && echo "report of $3" > $d/summary.md\n'
    )
    fake.chmod(0o755)
    (tmp_path / "logs").mkdir()
    env = {**os.environ, "PY": str(fake), "ARGS": "hydra/launcher=joblib hydra.launcher.n_jobs=8"}
    script = REPO / "scripts" / "run_studies.sh"
    subprocess.run(["bash", str(script), "full", "norm_compare", "bn_mlp"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)  # fmt: skip
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    common = "callbacks.progress_bar=null hydra/launcher=joblib hydra.launcher.n_jobs=8"
    expected = [f"-m ablate.study experiment={p} --default-max-hours 0.2 {common}"
                for p in ("norm_compare", "bn_mlp")]  # fmt: skip
    assert calls == expected  # the preset's own study.max_hours, if any, beats the 0.2 h default
    report = tmp_path / "docs" / "results" / "bn_mlp" / "summary.md"
    assert report.read_text() == "report of experiment=bn_mlp\n"
    timings = (tmp_path / "docs" / "results" / "timings.txt").read_text()
    assert "norm_compare: exit 0" in timings and "bn_mlp: exit 0" in timings
    env["MAX_HOURS"] = "0.5"  # a cap on the command line beats the preset's
    subprocess.run(["bash", str(script), "quick", "bn_mlp"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)  # fmt: skip
    last = (tmp_path / "calls.txt").read_text().splitlines()[-1]
    assert last == f"-m ablate.study experiment=bn_mlp_quick --max-hours 0.5 {common}"


def test_a_seed_cap_that_can_never_decide_is_refused_and_every_preset_can_decide():
    from ablate.study import budget_problem

    assert budget_problem(3, 10, 2, 2) is None  # 5 looks, level 0.0077: 9 seeds reach it
    problem = budget_problem(3, 5, 2, 3)
    assert problem.startswith("study.max_seeds=5 can never decide a claim") and ">=9" in problem
    assert budget_problem(3, 3, 2, 0) is None  # no claims: nothing to decide
    studies = 0
    for path in sorted((REPO / "conf" / "experiment").glob("*.yaml")):
        try:
            design = read_design(f"experiment={path.stem}", [])
        except StudyError as e:  # not a study (no seeds swept): refused with one line
            assert "a study needs" in str(e), (path.stem, e)
            continue
        studies += 1
        cap, add, _ = resolve_budget(design.budget)
        assert budget_problem(len(design.seeds), cap, add, design.claims) is None, path.stem
    assert studies >= 20


def test_the_study_cli_refuses_a_declared_cap_before_anything_runs(tmp_path: Path):
    """A preset (or +study.max_seeds) that plans too few seeds is refused; --max-seeds only warns."""
    proc = forked_cli.run_program(
        ["-m", "ablate.study", "experiment=bn_mlp_quick", "study.max_seeds=4",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        REPO, {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "study.max_seeds=4 can never decide a claim" in errors[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "sweep").exists()


BAD_NUMBER = {
    "--max-seeds": st.integers(max_value=0),
    "--add": st.integers(max_value=0),
    "--max-hours": st.floats(max_value=0) | st.just(float("nan")),
    "--default-max-hours": st.floats(max_value=0) | st.just(float("nan")),
}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    numbers=st.dictionaries(st.sampled_from(sorted(BAD_NUMBER)), st.none(), min_size=0, max_size=4),
    flags=st.lists(
        st.sampled_from(["-m", "--multirun", "-c", "--cfg", "-cn"]), max_size=2, unique=True
    ),
    text=st.sampled_from([None, "--max-seeds", "--add", "--max-hours"]),
    data=st.data(),
)
def test_bad_study_flags_are_one_line_each_and_exit_2_before_anything_is_written(
    numbers, flags, text, data, tmp_path, capsys
):
    """Flags out of range (a zero --add divided the seed plan: a ZeroDivisionError; a negative
    --max-seeds ran a study), text where a number goes, or an ablate.train flag among the
    overrides: one `error:` line each, exit 2, no study folder."""
    import ablate.study as study_cli

    assume(numbers or flags or text)
    argv = ["experiment=bn_mlp_quick", f"log_dir={tmp_path / 'logs'}"]
    for flag in numbers:  # --flag=value: argparse takes "-1e+16" after a space for a flag
        argv.append(f"{flag}={data.draw(BAD_NUMBER[flag])}")
    if text:
        argv += [text, "ten"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        study_cli.main([*argv, "--", *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    if text:  # argparse stops at the first value it cannot read: that one line
        assert err == [f"python -m ablate.study: error: argument {text}: invalid "
                       f"{'float' if 'hours' in text else 'int'} value: 'ten' (see --help)"]  # fmt: skip
    else:
        assert len(err) == len(numbers) + len(flags), err
        for flag in [*numbers, *flags]:
            named = [
                line for line in err if line.startswith((f"error: {flag} ", f"error: {flag}:"))
            ]
            assert len(named) == 1, (flag, err)
    assert not (tmp_path / "logs").exists()


def test_a_bad_override_is_refused_by_the_study_before_anything_is_written(tmp_path, capsys):
    """As ablate.train words it (a value, an option, a key), before study.json or a run folder."""
    import ablate.study as study_cli

    for bad, says in (("optim.lr=-1", "optim.lr=-1 is not allowed: a number > 0"),
                      ("norm=bogus", "norm=bogus is not allowed: one of ['batch', "),
                      ("reg.l3=1", "unknown key reg.l3 for reg=none")):  # fmt: skip
        capsys.readouterr()
        assert study_cli.main(["experiment=bn_mlp_quick", bad, f"log_dir={tmp_path}"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"ablate.study: error: {says}"), line
    assert not any(tmp_path.iterdir())


def _interrupted(data_root: Path, tmp: Path, whole_group: bool) -> tuple[str, int, dict]:
    """A study whose first run is stopped mid-training by SIGINT: its output, status and summary."""
    args = _study_args(data_root, tmp, "", "20,50")
    args = [a for a in args if not a.startswith("trainer.max_steps")]
    args += ["trainer.max_steps=100000", "trainer.max_epochs=10000",
             "callbacks.last_checkpoint.every_n_train_steps=4"]  # fmt: skip
    # its own process group, as a terminal's job, with Ctrl-C not ignored (as a background job
    # of a non-interactive shell has it, and Python then leaves it so)
    proc = _study(*args, new_session=True)
    sweep, deadline = tmp / "sweep", time.monotonic() + 240
    try:
        while not any(sweep.glob("*/checkpoints/last.ckpt")):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.05)
        # Ctrl-C in a terminal signals the whole group; `kill -INT <pid>` the study alone
        (os.killpg if whole_group else os.kill)(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=120)[0]
    finally:  # whatever failed, no 100,000-step run is left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    (summary,) = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    return out, proc.returncode, summary


def test_ctrl_c_stops_a_study_with_one_line_and_its_run_saved(data_root, tmp_path):
    for whole_group in (True, False):
        out, rc, summary = _interrupted(data_root, tmp_path / str(whole_group), whole_group)
        assert rc == -signal.SIGINT, out[-4000:]  # ended by Ctrl-C, as Python ends
        assert "Traceback" not in out, out[-4000:]
        assert out.rstrip().endswith(
            "ablate.study: interrupted; the same command continues where it stopped"
        )
        # the run saved its place and says so (SIGINT from the terminal, SIGTERM from the study)
        assert summary["status"] == "interrupted", summary.get("status")
        assert summary["interrupted_at_step"] >= 4

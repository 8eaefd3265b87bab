"""Property: any bad override (a wrong type, an out-of-range number, an unknown key in a strict
group, an unknown option name) is refused with exit code 2 and exactly one `error:` line per
problem naming it, no traceback, and nothing written. Most cases run in-process against
ablate.preflight.check_command_line (what `python -m ablate.train` calls first); a few run the CLI."""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, fast_overrides, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ablate.preflight import MODES, check_command_line, command_line_problems
from ablate.run.identity import RESUME_MODES
from ablate.schema.config import NODES, allowed_keys, model_of
from ablate.techniques.norm import PLACEMENTS

STRICT_GROUPS = ("data", "model", "norm", "reg", "init", "aug", "optim", "scheduler")


@dataclass(frozen=True)
class Bad:
    """One bad override and how its error line starts."""

    override: str
    expected: str
    key: str


RESERVED = {
    "true",
    "false",
    "null",
    "nan",
    "inf",
    "auto",
}  # words Hydra or the schema read otherwise
WORD = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(lambda w: w not in RESERVED)
BOOLS = st.sampled_from(["true", "false"])
LISTS = st.lists(st.integers(-5, 5), max_size=3).map(lambda v: f"[{','.join(map(str, v))}]")
NOT_FINITE = st.sampled_from(["nan", "inf", "-inf"])


def ints(low: int | None = None, high: int | None = None) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(str)


def floats(low: float | None = None, high: float | None = None) -> st.SearchStrategy[str]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(repr)


ANY_FLOAT = floats(-1e9, 1e9)
BAD_VALUES = {  # kind -> values it never takes
    "positive_int": ints(high=0) | ANY_FLOAT | WORD | BOOLS | LISTS,
    "non_negative_int": ints(high=-1) | ANY_FLOAT | WORD | BOOLS | LISTS,
    "positive": floats(high=0.0) | NOT_FINITE | WORD | BOOLS | LISTS,
    "non_negative": floats(high=-1e-9) | NOT_FINITE | WORD | BOOLS | LISTS,
    "probability": floats(1.0, 1e9) | floats(high=-1e-9) | NOT_FINITE | WORD | BOOLS,
    "open_fraction": floats(1.0, 1e9) | floats(high=0.0) | NOT_FINITE | WORD | BOOLS,
    "bool": ints() | ANY_FLOAT | WORD | LISTS,
    "seed": ints(high=-1) | ANY_FLOAT | WORD | BOOLS | LISTS,
    "threads": ints(high=0) | ANY_FLOAT | WORD | BOOLS,
    "max_loss": floats(high=0.0) | st.just("nan") | WORD | BOOLS,
    "steps": ints(high=-2) | st.just("0") | ANY_FLOAT | WORD | BOOLS,
}
KEYS = {
    "seed": "seed", "threads": "threads", "max_loss": "max_loss", "deterministic": "bool",
    "data.batch_size": "positive_int", "data.eval_batch_size": "positive_int",
    "data.train_subset": "positive_int", "data.num_workers": "non_negative_int",
    "data.eval_train_max": "non_negative_int", "data.val_fraction": "open_fraction",
    "data.download": "bool", "data.standardize": "bool", "data.on_device": "bool",
    "reg.l1": "non_negative", "reg.l2": "non_negative", "reg.weight_decay": "non_negative",
    "reg.dropout": "probability", "reg.dropout2d": "probability",
    "reg.label_smoothing": "probability", "model.hidden": "non_negative_int",
    "model.convs": "positive_int", "model.pool": "bool", "model.head_norm": "bool",
    "model.tta_flip": "bool", "model.compile": "bool", "norm.eps": "positive",
    "optim.lr": "positive", "optim.momentum": "non_negative",
    "scheduler.pct_start": "open_fraction", "scheduler.div_factor": "positive",
    "trainer.max_steps": "steps", "trainer.log_every_n_steps": "non_negative_int",
}  # fmt: skip
CHOICES = {
    "model.activation": {"relu", "leaky_relu", "gelu", "silu", "elu", "tanh"},
    "norm.placement": set(PLACEMENTS),
    "init.distribution": {"normal", "uniform"},
    "init.mode": {"fan_in", "fan_out"},
    "data.aug_family": {"digits", "fashion", "natural"},
    "resume": set(RESUME_MODES),
}


def _target(group: str, option: str) -> str | None:
    """The `_target_` of conf/<group>/<option>.yaml, or of the option it extends."""
    node = OmegaConf.load(REPO / "conf" / group / f"{option}.yaml") or {}
    base = [d for d in node.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    return node.get("_target_") or (_target(group, base[0]) if base else None)


@functools.cache
def _fields(group: str) -> set[str]:
    """The keys any option of the group takes (read from its targets, as the check does)."""
    if group in NODES:
        return set(allowed_keys(NODES[group]))
    nodes = [{"_target_": _target(group, o)} for o in _options(group)]
    return {k for n in nodes for k in allowed_keys(model_of(group, group, n))}


def _options(group: str) -> set[str]:
    return {p.stem for p in (REPO / "conf" / group).glob("*.yaml")}


def bad_value() -> st.SearchStrategy[Bad]:
    typed = st.sampled_from(sorted(KEYS)).flatmap(
        lambda k: BAD_VALUES[KEYS[k]].map(lambda v: Bad(f"{k}={v}", f"{k}=", k))
    )
    chosen = st.sampled_from(sorted(CHOICES)).flatmap(
        lambda k: (WORD.filter(lambda w: w not in CHOICES[k]) | ints()).map(
            lambda v: Bad(f"{k}={v}", f"{k}=", k)
        )
    )
    return typed | chosen


def unknown_key(plus: str = "+") -> st.SearchStrategy[Bad]:
    def bad(group: str) -> st.SearchStrategy[Bad]:
        names = WORD.filter(lambda w: w not in _fields(group))
        return names.map(lambda n: Bad(f"{plus}{group}.{n}=1", f"unknown key {group}.{n}", n))

    return st.sampled_from(STRICT_GROUPS).flatmap(bad)


def unknown_option() -> st.SearchStrategy[Bad]:
    groups = ["data", "model", "norm", "reg", "init", "aug", "optim", "scheduler", "trainer"]

    def bad(group: str) -> st.SearchStrategy[Bad]:
        names = WORD.filter(lambda w: w not in _options(group))
        return names.map(lambda n: Bad(f"{group}={n}", f"{group}={n} is not allowed: one of", n))

    return st.sampled_from(groups).flatmap(bad)


# Problems Hydra can compose past are all reported; one that stops composing is reported alone.
PROBLEMS = st.one_of(
    st.lists(bad_value() | unknown_key(), min_size=1, max_size=3, unique_by=lambda b: b.key),
    unknown_key(plus="").map(lambda b: [b]),
    unknown_option().map(lambda b: [b]),
)


def assert_refused(problems: list[Bad], stderr: str, log_dir: Path) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == len(problems), (problems, stderr)
    for p in problems:
        assert sum(line.startswith(f"error: {p.expected}") for line in lines) >= 1, (p, lines)
    assert "Traceback" not in stderr
    assert not log_dir.exists() or not any(log_dir.iterdir()), "nothing is written"


_examples = itertools.count()


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(problems=PROBLEMS)
def test_bad_overrides_exit_2_with_one_line_each(problems, tmp_path, capsys):
    capsys.readouterr()
    log_dir = tmp_path / f"logs{next(_examples)}"
    with pytest.raises(SystemExit) as exit_:
        check_command_line([*(p.override for p in problems), f"log_dir={log_dir}"])
    assert exit_.value.code == 2
    assert_refused(problems, capsys.readouterr().err, log_dir)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    modes=st.lists(st.sampled_from(sorted(MODES)), min_size=2, max_size=3, unique=True),
    spelling=st.data(),
)
def test_two_hydra_modes_are_one_line_naming_both_not_hydras_traceback(modes, spelling, capsys):
    """-m with --cfg (or any two of Hydra's modes, long or short): Hydra raises a ValueError with
    a traceback; the command is refused with one line that names the flags as given."""
    flags = [spelling.draw(st.sampled_from([m, *MODES[m]])) for m in modes]
    argv = ["norm=batch"]
    for flag in flags:
        argv += [flag, "job"] if flag in ("--cfg", "-c") else [flag]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        check_command_line(argv)
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and all(f in line for f in flags) and "keep one" in line
    one = next(f for f in flags if f not in ("-m", "--multirun"))
    assert command_line_problems(["norm=batch", one]) == []  # one mode: left to Hydra


@settings(
    max_examples=3,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(problems=PROBLEMS)
def test_bad_overrides_through_the_cli_leave_no_run_folder(problems, tmp_path):
    log_dir = tmp_path / f"cli{next(_examples)}"
    proc = run_cli(*(p.override for p in problems), f"log_dir={log_dir}", timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert_refused(problems, proc.stderr, log_dir)


NEW_NORM = '''
from torch import nn

from ablate.schema.fields import PositiveInt
from ablate.techniques.norm import Norm, Placement


def local_response(placement: Placement = "before_act", size: PositiveInt = 5) -> Norm:
    """LRN (Krizhevsky et al. 2012), as the README's "Adding a technique" adds it."""
    return Norm("local_response", lambda c: nn.LocalResponseNorm(size), placement, learned_shift=False)
'''


@pytest.fixture
def new_option(tmp_path, monkeypatch):
    """A norm the schema has never seen: its module, and conf/norm/lrn.yaml on a Hydra search path."""
    (tmp_path / "new_norms.py").write_text(NEW_NORM)
    (tmp_path / "conf" / "norm").mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}")

    def write(body: str) -> list[str]:
        (tmp_path / "conf" / "norm" / "lrn.yaml").write_text(
            f"_target_: new_norms.local_response\nplacement: before_act\n{body}\n"
        )
        return ["norm=lrn", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"]

    return write


@pytest.mark.parametrize(
    ("body", "extra", "expected"),
    [
        ("sise: 5", [], "unknown key norm.sise for norm=lrn: allowed keys are ['_target_', 'placement', 'size']"),
        ("size: 0", [], "norm.size=0 is not allowed: a positive integer"),
        ("size: 5", ["norm.placement=middle"], "norm.placement='middle' is not allowed: one of"),
        ("size: 5", ["+norm.sise=3"], "unknown key norm.sise for norm=lrn"),
    ],
)  # fmt: skip
def test_a_new_option_file_is_checked_from_its_targets_signature(
    body, extra, expected, new_option, data_root, tmp_path, capsys
):
    """No schema entry for the new option: its keys and ranges come from the function it names."""
    overrides = [*new_option(body), *extra, *fast_overrides(data_root, tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        check_command_line(overrides)
    assert exit_.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {expected}"), line
    assert not (tmp_path / "logs").exists()


def test_a_new_option_with_a_typo_through_the_cli(new_option, data_root, tmp_path):
    proc = run_cli(*new_option("sise: 5"), *fast_overrides(data_root, tmp_path))
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "unknown key norm.sise for norm=lrn" in line and "'size'" in line
    assert "Traceback" not in proc.stderr and not (tmp_path / "logs").exists()


def test_a_new_valid_option_passes_every_check(new_option, data_root, tmp_path):
    assert (
        command_line_problems([*new_option("size: 3"), *fast_overrides(data_root, tmp_path)]) == []
    )

"""Property: any bad override (a wrong type, an out-of-range number, an unknown key in a strict
group, an unknown option name) is refused with exit code 2 and exactly one `error:` line per
problem naming it, no traceback, and nothing written. Most cases run in-process against
ablate.preflight.check_command_line (what `python -m ablate.train` calls first); a few run the CLI."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.preflight import check_command_line
from ablate.run.identity import RESUME_MODES
from ablate.schema import GROUPS, STRICT_GROUPS
from ablate.techniques.norm import PLACEMENTS


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


def _fields(group: str) -> set[str]:
    spec = GROUPS[group]
    models = spec.values() if isinstance(spec, dict) else [spec]
    return {f.alias or name for m in models for name, f in m.model_fields.items()}


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
    max_examples=60,
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

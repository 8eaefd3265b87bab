"""Each script in benchmarks/ runs with --quick on the tiny generated datasets and prints its figures."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout
from pathlib import Path

import forked_cli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ablate.testing.bench import FIGURE, figure, machine, parse_figures

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmarks() -> None:
    assert len(BENCHMARKS) >= 9, BENCHMARKS


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_runs_quick(script: Path, data_root: Path, tmp_path: Path) -> None:
    """Exit 0 in seconds, with at least one figure, every `figure:` line parsing, names unique."""
    env = {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "MPLBACKEND": "Agg",
        "HYDRA_FULL_ERROR": "1",
    }
    # forked from the test worker's fork server (the script's own imports shared); what a script
    # times as a whole process it still starts fresh
    proc = forked_cli.run_program(
        [str(script), "--quick", "--data-root", str(data_root), "--cache-dir", str(tmp_path / "cache")],
        tmp_path, env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = parse_figures(proc.stdout)
    assert figures, f"{script.name} printed no figure:\n{proc.stdout[-2000:]}"
    names = [f.name for f in figures]
    assert len(set(names)) == len(names), names
    assert all(name.startswith(f"{script.stem}/") for name in names), names
    assert {f.machine for f in figures} == {machine()}


@pytest.mark.parametrize(
    "line",
    [
        "figure: a/b = 1.2 img/s (x86_64, 2 CPUs, no GPU, torch 2)",
        "figure: a = -3e-05 ms (m)",
    ],
)
def test_figure_lines_parse(line: str) -> None:
    assert FIGURE.match(line) and len(parse_figures(line)) == 1


@pytest.mark.parametrize(
    "line",
    [
        "figure: a b = 1 x (m)",  # a name with a space
        "figure: a = nan x (m)",  # not a finite number
        "figure: a = 1 x",  # no machine
        "figure: a = fast x (m)",
    ],
)
def test_malformed_figure_lines_raise(line: str) -> None:
    with pytest.raises(ValueError, match="not a figure line"):
        parse_figures(f"some table\n{line}\n")


WORD = st.text(st.sampled_from("abcxyz_/.+0123456789"), min_size=1, max_size=20)


@given(name=WORD, unit=WORD, value=st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_a_printed_figure_parses_back(name: str, unit: str, value: float) -> None:
    """What `figure` prints is one line that `parse_figures` reads back, to 4 significant digits."""
    out = io.StringIO()
    with redirect_stdout(out):
        figure(name, value, unit)
    (fig,) = parse_figures(out.getvalue())
    assert (fig.name, fig.unit, fig.machine) == (name, unit, machine())
    assert fig.value == pytest.approx(value, rel=1e-3, abs=1e-300)

"""The verdict calibration benchmark's studies, in process: null scenarios keep the family-wise
error near 0.05 and the effect scenarios decide (the full table: benchmarks/verdict_calibration.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "verdict_calibration.py"
spec = importlib.util.spec_from_file_location("verdict_calibration", PATH)
calibration = importlib.util.module_from_spec(spec)
sys.modules["verdict_calibration"] = calibration  # dataclasses look their module up there
spec.loader.exec_module(calibration)
SCENARIOS = {s.name: s for s in calibration.SCENARIOS}
STUDIES = 25  # per scenario: what CI can afford; the README's table has 1,000


@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if s.null])
def test_a_null_scenario_errs_at_most_at_the_nominal_rate(name: str) -> None:
    rng = np.random.default_rng([7, list(SCENARIOS).index(name)])
    errors = sum(calibration.study(SCENARIOS[name], rng)[0] for _ in range(STUDIES))
    # at a true rate of 0.05, this many errors or more in 25 studies has probability < 0.001
    assert stats.binomtest(errors, STUDIES, 0.05, alternative="greater").pvalue > 1e-3, errors


@pytest.mark.parametrize("name", ["null_identical_arms", "null_float_noise"])
def test_identical_arms_stop_at_the_first_look_as_not_tested(name: str) -> None:
    error, _, seeds = calibration.study(SCENARIOS[name], np.random.default_rng(1))
    assert not error and seeds == len(calibration.INITIAL)


def test_a_real_effect_is_found() -> None:
    rng = np.random.default_rng(3)
    right = sum(calibration.study(SCENARIOS["effect_normal_2sd"], rng)[1] for _ in range(10))
    assert right >= 20, right  # of 30 true claims, each a shift of 2 sd of one arm's seeds

"""Verdict calibration: whole simulated studies through the real judging code, with known truth.

Each simulated study is what `python -m ablate.study` does with a preset of three claims: 3
seeds per cell, then 2 more per look up to 10 (5 looks, Pocock spending, information = seeds),
every claim judged at each look by `ablate.report.judge.judge_all` with the decisions of the earlier
looks carried, stopping once every claim is decided or not tested. Under a null scenario every
"supported" / "contradicted" (or, for `at_margin`, every "no effect") is an error; the figure is
the family-wise error: the share of studies with at least one error across claims and looks,
with its 95% Clopper-Pearson interval. Under an effect scenario the figure is the power: the
share of true claims decided the right way by the end. The goal: every null at or below 0.05
within Monte-Carlo error.

    python benchmarks/verdict_calibration.py [--quick] [--studies 2000] [--scenarios null_normal ...]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ablate.report.judge import carry, judge_all
from ablate.report.load import STEPS
from ablate.study import planned_looks, seeds_at
from ablate.testing.bench import figure, parse_args
from ablate.testing.synthetic import NEVER, grid, sweep

INITIAL, ADD, MAX_SEEDS, CLAIMS = [0, 1, 2], 2, 10, 3
Draw = Callable[[np.random.Generator, int], dict]  # rng, seeds -> {level: values per seed}


@dataclass(frozen=True)
class Scenario:
    """A truth to simulate: how arms are drawn, which verdicts are errors, what power means."""

    name: str
    draw: Draw
    null: bool
    metric: str = "test/acc"
    error: tuple[str, ...] = ("supported", "contradicted")  # a null scenario's false verdicts
    factors: int = 1  # 2: a second swept factor the claims do not fix


def _acc(rng: np.random.Generator, n: int, shift: float = 0.0, sd: float = 0.01) -> np.ndarray:
    return 0.9 + shift + sd * rng.standard_normal(n)


def _pairs(one: Callable[[np.random.Generator, int, bool], np.ndarray]) -> Draw:
    """Three claims l0>l1, l2>l3, l4>l5: `one(rng, n, better)` draws an arm's seeds."""
    return lambda rng, n: {f"l{i}": one(rng, n, i % 2 == 0) for i in range(2 * CLAIMS)}


def _collapse(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """Accuracies that collapse to 0.1 at a `share` of the seeds (bimodal outcomes)."""
    return np.where(rng.random(n) < share, 0.1 + 0.01 * rng.random(n), _acc(rng, n))


def _steps(rng: np.random.Generator, n: int, mean: float, never: float) -> np.ndarray:
    """Steps to target on a 20-step validation grid, never reached at a `never` share of seeds."""
    steps = 20 * np.ceil(np.maximum(rng.normal(mean, 30, n), 1) / 20)
    return np.where(rng.random(n) < never, NEVER, steps)


def _identical(noise: float) -> Draw:
    def draw(rng: np.random.Generator, n: int) -> dict:
        out = {}
        for c in range(CLAIMS):
            a = _acc(rng, n)
            out[f"l{2 * c}"], out[f"l{2 * c + 1}"] = a + noise, a.copy()
        return out

    return draw


def _seed_dependent(rng: np.random.Generator, n: int) -> dict:
    """A second factor (lr, 3 levels) the claims do not fix; the effect varies with the seed, mean 0."""
    out = {}
    for c in range(CLAIMS):
        u = 0.02 * rng.standard_normal(n)  # this seed's effect, the same at every lr
        for lr in ("0.01", "0.1", "1"):
            out[(f"l{2 * c}", lr)] = _acc(rng, n, sd=0.002) + u
            out[(f"l{2 * c + 1}", lr)] = _acc(rng, n, sd=0.002)
    return out


SCENARIOS = [
    Scenario("null_normal", _pairs(lambda r, n, b: _acc(r, n)), True),
    Scenario("null_heavy_tailed", _pairs(lambda r, n, b: 0.9 + 0.01 * r.standard_t(2, n)), True),
    Scenario("null_bimodal_collapse", _pairs(lambda r, n, b: _collapse(r, n, 0.25)), True),
    Scenario("null_censored_steps", _pairs(lambda r, n, b: _steps(r, n, 100, 0.4)), True, STEPS),
    Scenario("null_identical_arms", _identical(0.0), True),
    Scenario("null_float_noise", _identical(1e-9), True),
    Scenario("null_seed_dependent", _seed_dependent, True, factors=2),
    Scenario(
        "null_at_margin",
        _pairs(lambda r, n, b: _acc(r, n, 0.005 * b, 0.003)),
        True,
        error=("no effect",),
    ),  # fmt: skip
    Scenario("effect_normal_1sd", _pairs(lambda r, n, b: _acc(r, n, 0.01 * b)), False),
    Scenario("effect_normal_2sd", _pairs(lambda r, n, b: _acc(r, n, 0.02 * b)), False),
    Scenario("effect_collapse", _pairs(lambda r, n, b: _collapse(r, n, 0.0 if b else 0.5)), False),
    Scenario(
        "effect_censored_faster",
        _pairs(lambda r, n, b: _steps(r, n, 60 if b else 140, 0.2)),
        False,
        STEPS,
    ),  # fmt: skip
]


def _claims(metric: str) -> list[dict]:
    return [{"text": f"l{2 * c} beats l{2 * c + 1}", "metric": metric, "factor": "norm",
             "better": f"l{2 * c}", "worse": f"l{2 * c + 1}"} for c in range(CLAIMS)]  # fmt: skip


def study(s: Scenario, rng: np.random.Generator) -> tuple[bool, int, int]:
    """One simulated study: (any error, true claims decided right, seeds used at the end)."""
    K = planned_looks(len(INITIAL), MAX_SEEDS, ADD)
    fractions = tuple(float(len(seeds_at(INITIAL, k, ADD, MAX_SEEDS))) for k in range(1, K + 1))
    values = s.draw(rng, MAX_SEEDS)  # every seed drawn up front; a look sees its first n
    claims, earlier, error = _claims(s.metric), {}, False
    for k in range(1, K + 1):
        n = len(seeds_at(INITIAL, k, ADD, MAX_SEEDS))
        if s.factors == 2:
            sw = grid({cell: v[:n] for cell, v in values.items()}, ["norm", "optim.lr"], claims)
        else:
            sw = sweep({lv: v[:n] for lv, v in values.items()}, claims, metric=s.metric,
                       val_interval=20.0)  # fmt: skip
        verdicts = judge_all(sw, looks=(k, K), fractions=fractions, earlier=earlier)
        error |= s.null and any(v.verdict in s.error for v in verdicts)
        earlier = carry(earlier, verdicts)
        if all(v.final for v in verdicts):
            break
    right = 0 if s.null else sum(v.verdict == "supported" for v in verdicts)
    return error, right, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=2000, help="simulated studies per scenario")
    p.add_argument("--scenarios", nargs="*", default=[s.name for s in SCENARIOS])
    p.add_argument("--seed", type=int, default=0)
    args = parse_args(p, {"studies": 10})
    print(f"{'scenario':26} {'studies':>7} {'FWER [95% CI] or power':>26} {'mean seeds':>10}")
    for s in (s for s in SCENARIOS if s.name in args.scenarios):
        rng = np.random.default_rng([args.seed, SCENARIOS.index(s)])
        results = [study(s, rng) for _ in range(args.studies)]
        seeds = float(np.mean([r[2] for r in results]))
        if s.null:
            errors = sum(r[0] for r in results)
            ci = stats.binomtest(errors, args.studies).proportion_ci(method="exact")
            rate = errors / args.studies
            print(
                f"{s.name:26} {args.studies:7d} {rate:8.3f} [{ci.low:.3f}, {ci.high:.3f}] FWER {seeds:10.1f}"
            )
            figure(f"verdict_calibration/{s.name}/fwer", rate, "share")
        else:
            power = sum(r[1] for r in results) / (CLAIMS * args.studies)
            print(f"{s.name:26} {args.studies:7d} {power:8.3f} power {'':17} {seeds:10.1f}")
            figure(f"verdict_calibration/{s.name}/power", power, "share")
        figure(f"verdict_calibration/{s.name}/seeds", seeds, "seeds")
    assert math.isfinite(seeds)


if __name__ == "__main__":
    main()

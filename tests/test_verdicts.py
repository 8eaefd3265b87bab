"""Claim verdicts on generated runs whose right answers are known: the seed as the unit, exact
tests, censored and failed runs, identical arms, group-sequential Holm, interactions, nuisance
keys tuned on their own seeds (no training)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

os.environ.setdefault("MPLBACKEND", "Agg")

from ablate.overrides import value_text  # noqa: E402
from ablate.report.judge import exact  # noqa: E402
from ablate.report.judge.claims import judge, judge_all  # noqa: E402
from ablate.report.judge.sequential import boundaries, look_alpha, spent  # noqa: E402
from ablate.report.judge.verdicts import Verdict, seeds_needed  # noqa: E402
from ablate.report.load.runs import STEPS, Run  # noqa: E402
from ablate.report.load.sweep import Sweep, order_levels  # noqa: E402
from ablate.report.render.claims_section import fmt_difference, fmt_p, fmt_verdict, section_claims  # noqa: E402
from ablate.report.render.forest import plot_forest  # noqa: E402
from ablate.testing.synthetic import FAILED, NEVER, sweep  # noqa: E402

ACC = {"text": "BN beats none", "metric": "test/acc", "factor": "norm", "better": "batch",
       "worse": "none"}  # fmt: skip


def run(seed: int, status: str = "completed", **values: float | str) -> Run:
    """A run: keyword `f_<key>` sets factor <key> (dots as `__`), the others are metrics."""
    factors = {
        k[2:].replace("__", "."): value_text(v) for k, v in values.items() if k.startswith("f_")
    }
    metrics = {k.replace("__", "/"): float(v) for k, v in values.items() if not k.startswith("f_")}
    name = ",".join(f"{k}={v}" for k, v in factors.items()) + f",seed={seed}"
    r = Run(name, status, seed=seed, overrides=dict(factors), metrics=metrics)
    r.factors = factors
    return r


def sweep_of(runs: list[Run], claims: list[dict], budget: float = 1000.0) -> Sweep:
    factors = list(runs[0].factors)
    levels = {f: order_levels((r.factors[f] for r in runs), []) for f in factors}
    return Sweep(Path("sweep"), runs, factors, levels, None, None, claims, budget)


def verdicts_of(arms: dict, claims=None, **kw) -> list[Verdict]:
    return judge_all(sweep(arms, claims, **kw))


def two_sides(better: np.ndarray, worse: np.ndarray, seeds=None, metric="test__acc") -> list[Run]:
    seeds = range(len(better)) if seeds is None else seeds
    runs = [
        run(s, f_norm="batch", **{metric: v})
        for s, v in zip(range(len(better)), better, strict=True)
    ]
    return runs + [run(s, f_norm="none", **{metric: v}) for s, v in zip(seeds, worse, strict=True)]


def correlated(shift: float, n: int = 8, seed_sd: float = 0.02, noise: float = 0.001, rng=0):
    """(better, worse) sharing a per-seed offset: a shift of half a between-seed sd by default."""
    rng = np.random.default_rng(rng)
    offset = rng.normal(0, seed_sd, n)
    return 0.9 + offset + shift + rng.normal(0, noise, n), 0.9 + offset + rng.normal(0, noise, n)


def test_exact_p_is_scipys_signed_rank_permutation_test():
    """The vectorized exact test equals scipy.stats.wilcoxon's permutation version (ties too)."""
    rng = np.random.default_rng(4)
    for n in (1, 3, 6, 9, 12):
        for _ in range(5):
            d = np.round(rng.normal(0.3, 1, n), 1)  # rounded: ties in |d|, and some zeros
            if exact.informative(d).size < 2:
                continue
            ref = stats.wilcoxon(
                exact.informative(d), method=stats.PermutationMethod(n_resamples=10**5)
            )
            assert exact.two_sided(d) == pytest.approx(ref.pvalue)
    assert exact.smallest_p(5) == 0.0625 and exact.smallest_p(6) == 0.03125
    assert exact.pairs_for(0.05) == 6 and exact.pairs_for(0.05 / 3) == 7


def test_paired_seeds_decide_by_the_exact_test_and_the_t_interval_gives_the_size():
    better, worse = correlated(shift=0.01)
    v = judge(ACC, sweep_of(two_sides(better, worse), [ACC]))
    d = better - worse
    assert v.verdict == "supported" and v.comparison.pairing == "paired"
    assert (v.comparison.n, v.comparison.wins, v.comparison.prob) == (8, 8, 1.0)
    assert v.p_adj == pytest.approx(2 / 2**8)  # every sign as claimed: the exact floor
    ref = stats.ttest_rel(better, worse)
    assert (v.lo, v.hi) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert v.comparison.effect == pytest.approx(d.mean() / d.std(ddof=1))  # Cohen's d_z
    assert "8 seeds: 8 as claimed, 0 against, 0 tied" in v.reason
    flipped = judge(ACC, sweep_of(two_sides(worse, better), [ACC]))
    assert flipped.verdict == "contradicted" and flipped.hi < 0


def test_few_seeds_never_decide_whatever_the_t_test_says():
    """3 seeds, every one as claimed by far: the t-test says p < 0.001, the exact test 0.25."""
    (v,) = verdicts_of({"a": [0.95, 0.96, 0.97], "b": [0.90, 0.911, 0.92]})
    assert v.verdict == "inconclusive" and v.p_adj == 0.25
    assert "an exact test needs 6 seeds with a sign" in v.reason and v.needed >= 6
    assert "never below 0.25" in fmt_verdict(v)


def test_a_target_one_arm_never_reaches_is_censored_not_the_budget():
    """Reached at step 40 at 3/3 seeds vs never: no '+118 [+118, +118]', and the budget is moot."""
    arms = {"a": [40, 40, 40], "b": [NEVER] * 3}
    claim = [
        {"text": "a is faster", "metric": STEPS, "factor": "norm", "better": "a", "worse": "b"}
    ]
    small, large = (verdicts_of(arms, claim, metric=STEPS, budget=b)[0] for b in (158, 2000))
    assert small.verdict == large.verdict == "inconclusive" and small.p_adj == large.p_adj == 0.25
    assert fmt_difference(small) == "—" and "reached the target: 3/3, 0/3" in small.reason
    arms6 = {"a": [40] * 6, "b": [NEVER] * 6}
    assert verdicts_of(arms6, claim, metric=STEPS)[0].verdict == "supported"
    # neither arm ever reaches it: no "no effect +0 [+0, +0]"
    (n,) = verdicts_of({"a": [NEVER] * 8, "b": [NEVER] * 8}, claim, metric=STEPS)
    assert n.verdict == "inconclusive" and n.comparison.neither == 8
    assert "not estimable at this budget" in n.reason
    # A reaches at 20 in 4/6 seeds and never in 2/6, B at 100 in 6/6: no sign flip with the budget
    mixed = {"a": [20, 20, 20, 20, NEVER, NEVER], "b": [100] * 6}
    lo, hi = (verdicts_of(mixed, claim, metric=STEPS, budget=b)[0] for b in (158, 1000))
    assert lo.verdict == hi.verdict == "inconclusive" and lo.p_adj == hi.p_adj
    assert (lo.comparison.wins, lo.comparison.losses) == (4, 2)
    assert fmt_difference(lo) == "+80 [+80, +80] over 4 of 6 seeds"


def test_the_steps_margin_is_never_finer_than_the_validation_interval():
    claim = {"text": "a is faster", "metric": STEPS, "factor": "norm", "better": "a", "worse": "b"}
    arms = {"a": [100] * 8, "b": [100] * 8}
    (v,) = verdicts_of(arms, [{**claim, "margin": 5}], metric=STEPS, val_interval=20.0)
    assert v.margin == 20.0
    (w,) = verdicts_of(arms, [claim], metric=STEPS, val_interval=500.0, budget=50_000)
    assert w.margin == 500.0  # one validation interval, not 10% of the budget (5,000 steps)


def test_identical_and_float_noise_arms_are_not_tested_and_leave_the_family():
    a = list(0.9 + 0.01 * np.random.default_rng(1).standard_normal(7))
    real = {
        "text": "c beats d",
        "metric": "test/acc",
        "factor": "norm",
        "better": "c",
        "worse": "d",
    }
    same = {
        "text": "a beats b",
        "metric": "test/acc",
        "factor": "norm",
        "better": "a",
        "worse": "b",
    }
    for noise in (0.0, 1e-9):
        arms = {"a": [x + noise for x in a], "b": a, "c": [x + 0.02 for x in a], "d": a}
        v, w = verdicts_of(arms, [same, real])
        assert v.verdict == "not tested" and "identical at every seed" in v.reason
        assert not v.decided and v.final
        assert w.verdict == "supported" and w.level == 0.05  # a family of one: the other left it
        assert w.method.startswith("exact sign-flip, Holm over 1 claims")


def test_a_failed_or_diverged_worse_arm_is_its_worst_outcome_not_a_lost_pair():
    """The worse arm fails at 3 of 6 seeds: those seeds count for the claim, not against it."""
    arms = {"a": [0.9] * 6, "b": [0.95, FAILED, 0.95, FAILED, 0.95, FAILED]}
    (v,) = verdicts_of(arms)
    assert v.comparison.n == 6 and (v.comparison.wins, v.comparison.losses) == (3, 3)
    assert v.verdict == "inconclusive" and v.comparison.worst == (0, 3)
    assert "failed or diverged (counted as worst): 0, 3" in v.reason
    (w,) = verdicts_of({"a": [0.9] * 7, "b": [FAILED] * 7})
    assert w.verdict == "supported"


def test_an_unfixed_factor_is_averaged_within_the_seed():
    """A seed-dependent effect repeated at 3 levels of lr is 8 seeds, not 24 independent pairs."""
    rng = np.random.default_rng(2)
    u = 0.02 * rng.standard_normal(8)
    runs = [
        run(s, f_norm=norm, f_optim__lr=lr, test__acc=0.9 + (u[s] if norm == "batch" else 0))
        for norm in ("batch", "none") for lr in ("0.01", "0.1", "1") for s in range(8)
    ]  # fmt: skip
    v = judge(ACC, sweep_of(runs, [ACC]))
    assert v.comparison.n == 8 and v.comparison.mean == pytest.approx(u.mean())
    assert v.p_adj == pytest.approx(exact.two_sided(u))


def test_group_sequential_holm_spends_alpha_over_m_minus_r_and_decided_stays_decided():
    base = 0.9 + 0.01 * np.random.default_rng(3).standard_normal(10)
    claims = [{"text": f"{b} beats {w}", "metric": "test/acc", "factor": "norm", "better": b,
               "worse": w} for b, w in (("a", "b"), ("c", "d"), ("e", "f"))]  # fmt: skip
    arms = {"a": base + 0.05, "b": base, "c": base + 0.05, "d": base, "e": base, "f": base}
    arms["e"] = base + np.array([0.01, -0.01] * 5)
    vs = judge_all(sweep(arms, claims), looks=(2, 3), fractions=(6, 8, 10))
    first, second, third = vs
    # two rejections: levels alpha/3 then alpha/2 (as nominal levels of look 2 of 3)
    levels = sorted([first.level, second.level])
    assert levels == pytest.approx([look_alpha(2, 3, 0.05 / 3, fractions=(6, 8, 10)),
                                    look_alpha(2, 3, 0.05 / 2, fractions=(6, 8, 10))])  # fmt: skip
    assert first.verdict == second.verdict == "supported" and first.look == 2
    assert third.verdict == "inconclusive"
    assert third.level == pytest.approx(look_alpha(2, 3, 0.05, fractions=(6, 8, 10)))
    # at the next look the data of claim 1 turn against it: it stays decided, from look 2
    later = dict(arms, a=base - 0.05)
    earlier = {0: first, 1: second}
    again = judge_all(sweep(later, claims), looks=(3, 3), fractions=(6, 8, 10), earlier=earlier)
    assert again[0].verdict == "supported" and again[0].look == 2
    assert (again[0].p_adj, again[0].level) == (first.p_adj, first.level)  # what decided it
    assert "decided at look 2; stays decided" in again[0].reason


def test_equivalence_has_a_family_of_its_own():
    rng = np.random.default_rng(6)
    base = 0.9 + 0.01 * rng.standard_normal(10)
    eq = {"text": "c same as d", "metric": "test/acc", "factor": "norm", "better": "c",
          "worse": "d", "margin": 0.01}  # fmt: skip
    sup = {"text": "a beats b", "metric": "test/acc", "factor": "norm", "better": "a", "worse": "b"}
    arms = {"a": base + 0.05, "b": base, "c": base + 0.0005 * rng.standard_normal(10), "d": base}
    v_sup, v_eq = verdicts_of(arms, [sup, eq])
    assert v_sup.verdict == "supported" and v_eq.verdict == "no effect"
    assert v_eq.eq_level == pytest.approx(0.05 / 2)  # TOST: each one-sided test at alpha/m
    assert fmt_p(v_eq).startswith("TOST")


def test_seeds_needed_has_80_percent_power_at_the_planned_level():
    better, worse = correlated(shift=0.004, noise=0.006, n=8, rng=1)
    v = judge(ACC, sweep_of(two_sides(better, worse), [ACC]))
    assert v.verdict == "inconclusive" and math.isfinite(v.needed)
    n, c = int(v.needed), v.comparison
    rng = np.random.default_rng(0)  # a t-test at level 0.05 on n fresh seeds of this effect
    draws = rng.normal(c.mean, c.sd, (4000, n))
    t = draws.mean(1) / (draws.std(1, ddof=1) / math.sqrt(n))
    power = np.mean(np.abs(t) > stats.t.isf(0.025, n - 1))
    assert 0.76 < power < 0.86, (n, power)
    assert seeds_needed(c, 0.05, 0.0, cap=n - 1) is None  # beyond the cap: None (">1000" shown)


def test_interaction_claim_difference_of_differences():
    rng = np.random.default_rng(7)
    offset = rng.normal(0, 0.02, 8)
    means = {("batch", 32): 0.98, ("batch", 2): 0.90, ("group", 32): 0.975, ("group", 2): 0.96}
    runs = [
        run(
            s,
            f_norm=n,
            f_data__batch_size=b,
            test__acc=m + o + rng.normal(0, 0.002),
            test__loss=1 - m - o,
        )
        for (n, b), m in means.items()
        for s, o in enumerate(offset)
    ]
    # BN loses more accuracy going from 32 to 2 images per batch than GN does
    claim = {"text": "GN drops less", "metric": "test/acc", "factor": "norm", "better": "group",
             "worse": "batch", "by": {"key": "data.batch_size", "from": 32, "to": 2}}  # fmt: skip
    expected = (0.98 - 0.90) - (0.975 - 0.96)
    v = judge(claim, sweep_of(runs, [claim]))
    assert v.verdict == "supported" and v.comparison.mean == pytest.approx(expected, abs=0.005)
    assert v.comparison.n == 8 and v.better.mean == pytest.approx(0.96 - 0.975, abs=0.005)
    flipped = {**claim, "better": "batch", "worse": "group"}
    w = judge(flipped, sweep_of(runs, [flipped]))
    assert w.verdict == "contradicted" and w.comparison.mean == pytest.approx(-v.comparison.mean)
    alias = {**claim, "by": {"key": "data.batch_size", "levels": [32, 2]}}
    assert judge(alias, sweep_of(runs, [alias])).comparison.mean == v.comparison.mean
    loss = {**claim, "metric": "test/loss"}  # the loss rises less for GN: also as claimed
    assert judge(loss, sweep_of(runs, [loss])).comparison.mean == pytest.approx(expected)
    broken = {**claim, "by": {"key": "data.batch_size"}}
    b = judge(broken, sweep_of(runs, [broken]))
    assert b.verdict == "inconclusive" and "from and to" in b.reason


def test_nuisance_picks_each_side_on_validation_never_test():
    cells = {  # (norm, lr): (val/acc_best, test/acc)
        ("batch", "0.01"): (0.95, 0.95), ("batch", "0.1"): (0.96, 0.99),  # best test, not val
        ("batch", "1.0"): (0.97, 0.97),
        ("none", "0.01"): (0.93, 0.93), ("none", "0.1"): (0.92, 0.945), ("none", "1.0"): (0.10, 0.10),
    }  # fmt: skip
    rng = np.random.default_rng(9)
    runs = [
        run(
            s,
            f_norm=n,
            f_optim__lr=lr,
            val__acc_best=va + rng.normal(0, 1e-3),
            test__acc=te + rng.normal(0, 1e-3),
        )
        for (n, lr), (va, te) in cells.items()
        for s in range(8)
    ]
    claim = {**ACC, "nuisance": ["optim.lr"], "tuning_seeds": [0, 1]}
    v = judge(claim, sweep_of(runs, [claim]))
    assert v.picks == {"norm=batch": "optim.lr=1.0", "norm=none": "optim.lr=0.01"}
    # paired by seed at the picks, on the 6 seeds the values were not picked on
    assert v.comparison.pairing == "paired" and v.comparison.n == 6
    assert v.comparison.mean == pytest.approx(0.97 - 0.93, abs=3e-3) and v.verdict == "supported"
    plain = judge(ACC, sweep_of(runs, [ACC]))  # without nuisance: lr averaged within each seed
    assert plain.comparison.n == 8 and "`optim.lr` averaged" in plain.reason
    same_seeds = {**ACC, "nuisance": ["optim.lr"]}  # picked on the very seeds it is judged on
    w = judge(same_seeds, sweep_of(runs, [same_seeds]))
    assert w.verdict == "inconclusive" and "declare tuning_seeds" in w.reason
    md = section_claims(sweep_of(runs, [claim]), [v])
    assert (
        "nuisance picked on val/acc_best: norm=batch: optim.lr=1.0; norm=none: optim.lr=0.01" in md
    )


def test_spending_boundaries():
    # published Lan-DeMets Pocock-type boundaries: 5 equally spaced looks, two-sided 0.05
    assert boundaries(5) == pytest.approx((2.438, 2.427, 2.410, 2.397, 2.386), abs=2e-3)
    assert look_alpha(1, 1) == 0.05
    fractions = (3, 5, 7, 9)
    t = np.array(fractions) / 9
    z = np.cumsum(
        np.random.default_rng(2).normal(size=(200_000, 4)) * np.sqrt(np.diff(t, prepend=0)), 1
    ) / np.sqrt(t)
    for kind in ("pocock", "obrien-fleming"):
        c = np.array(boundaries(4, 0.05, kind, fractions))
        crossed = np.abs(z) >= c
        first = np.where(crossed.any(1), crossed.argmax(1), -1)
        for k in range(4):  # alpha spent at each look, by simulation of the normal model
            target = spent(t[k], 0.05, kind) - (spent(t[k - 1], 0.05, kind) if k else 0)
            assert (first == k).mean() == pytest.approx(target, abs=0.0015)
    obf = [look_alpha(k, 4, kind="obrien-fleming") for k in range(1, 5)]
    assert obf == sorted(obf) and obf[0] < 1e-3 < 0.02 < obf[-1] < 0.05


def test_judge_at_a_look_uses_its_nominal_level(tmp_path: Path):
    d = np.array([0.02, 0.03, 0.01, 0.04, 0.02, 0.05, -0.01])  # 6 of 7 as claimed: p = 4/128
    sweep_ = sweep_of(two_sides(0.9 + d, np.full(7, 0.9)), [{**ACC, "margin": 1e-6}])
    assert judge(sweep_.claims[0], sweep_).p_adj == pytest.approx(exact.two_sided(d))
    assert judge(sweep_.claims[0], sweep_).verdict == "supported"
    look = judge(sweep_.claims[0], sweep_, looks=(2, 4))
    assert look.verdict == "inconclusive" and look.level == pytest.approx(look_alpha(2, 4))
    assert look.method == "exact sign-flip, Holm over 1 claims, Pocock spending at look 2 of 4"
    assert "Pocock spending at look 2 of 4" in section_claims(sweep_, [look])
    assert plot_forest([look], tmp_path / "forest.png")
    assert (tmp_path / "forest.png").read_bytes().startswith(b"\x89PNG")
    assert not plot_forest([judge({"text": "no metric"}, sweep_)], tmp_path / "none.png")


def test_interaction_with_a_null_level_pairs_the_full_training_set():
    # aug_data_size's shape: augmentation helps more with 1,000 images than with all (null)
    rng = np.random.default_rng(5)
    means = {
        ("none", 1000): 0.90,
        ("light", 1000): 0.93,
        ("none", None): 0.99,
        ("light", None): 0.99,
    }
    runs = [
        run(s, f_aug=a, f_data__train_subset=n, test__acc=m + rng.normal(0, 0.002))
        for (a, n), m in means.items()
        for s in range(8)
    ]
    claim = {"text": "helps more with little data", "metric": "test/acc", "factor": "aug",
             "better": "light", "worse": "none", "higher_is_better": True,
             "by": {"key": "data.train_subset", "from": "null", "to": 1000}}  # fmt: skip
    v = judge(claim, sweep_of(runs, [claim]))
    assert v.verdict == "supported" and v.comparison.n == 8
    assert v.comparison.mean == pytest.approx(0.03, abs=0.005)


def test_a_claim_says_whether_the_technique_its_arms_differ_in_acted():
    """reg_overfit_quick's case: max-norm never bound, so dropout and dropout + max-norm tie."""
    values = list(0.9 + 0.01 * np.random.default_rng(8).standard_normal(7))
    claim = {"text": "max-norm adds to dropout", "metric": "test/acc", "factor": "reg",
             "better": "dropout_maxnorm", "worse": "dropout"}  # fmt: skip
    sw = sweep({"dropout_maxnorm": values, "dropout": values}, [claim], factor="reg")
    for r in sw.runs:
        r.techniques = {"dropout": {"dropped": 0.5, "acted": True}}
        if r.factors["reg"] == "dropout_maxnorm":
            r.techniques["max_norm"] = {"projections": 0, "steps": 600, "acted": False}
    (v,) = judge_all(sw)
    assert v.verdict == "not tested" and v.acted == "max_norm acted in 0 of 7 runs"
    assert "max_norm acted in 0 of 7 runs" in fmt_verdict(v)

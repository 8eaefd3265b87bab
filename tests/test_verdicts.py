"""Claim verdicts on generated runs whose right answers are known: pairing, outcomes, Holm,
interactions, nuisance factors, sequential looks (no training)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

os.environ.setdefault("MPLBACKEND", "Agg")

from ablate.overrides import value_text  # noqa: E402
from ablate.report.judge.claims import judge, judge_all  # noqa: E402
from ablate.report.judge.sequential import boundaries, look_alpha, spent  # noqa: E402
from ablate.report.judge.stats import mean_ci  # noqa: E402
from ablate.report.judge.verdicts import holm, holm_levels, outcome, paired, paired_arrays  # noqa: E402
from ablate.report.load.runs import Run  # noqa: E402
from ablate.report.load.sweep import Sweep, order_levels  # noqa: E402
from ablate.report.render.claims_section import fmt_difference, fmt_verdict, section_claims  # noqa: E402
from ablate.report.render.forest import plot_forest  # noqa: E402

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


def two_sides(better: np.ndarray, worse: np.ndarray, seeds=None, metric="test__acc") -> list[Run]:
    seeds = range(len(better)) if seeds is None else seeds
    runs = [
        run(s, f_norm="batch", **{metric: v})
        for s, v in zip(range(len(better)), better, strict=True)
    ]
    return runs + [run(s, f_norm="none", **{metric: v}) for s, v in zip(seeds, worse, strict=True)]


def correlated(shift: float, n: int = 5, seed_sd: float = 0.02, noise: float = 0.001, rng=0):
    """(better, worse) sharing a per-seed offset: a shift of half a between-seed sd by default."""
    rng = np.random.default_rng(rng)
    offset = rng.normal(0, seed_sd, n)
    return 0.9 + offset + shift + rng.normal(0, noise, n), 0.9 + offset + rng.normal(0, noise, n)


def test_paired_rule_decides_what_overlapping_cis_miss():
    better, worse = correlated(shift=0.01)
    assert mean_ci(better).overlaps(mean_ci(worse))  # the old rule: inconclusive
    v = judge(ACC, sweep_of(two_sides(better, worse), [ACC]))
    assert v.verdict == "supported" and v.comparison.pairing == "paired"
    assert (v.comparison.n, v.comparison.wins, v.comparison.prob) == (5, 5, 1.0)
    ref = stats.ttest_rel(better, worse)
    assert v.comparison.p == pytest.approx(ref.pvalue) and v.p_adj == pytest.approx(ref.pvalue)
    assert (v.lo, v.hi) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    d = better - worse
    assert v.comparison.effect == pytest.approx(d.mean() / d.std(ddof=1))  # Cohen's d_z
    assert "paired by seed over 5 pairs" in v.reason


def test_unmatched_seeds_fall_back_to_welch():
    better, worse = correlated(shift=0.01)
    v = judge(ACC, sweep_of(two_sides(better, worse, seeds=range(10, 15)), [ACC]))
    ref = stats.ttest_ind(better, worse, equal_var=False)
    assert v.comparison.pairing == "welch" and v.comparison.sizes == (5, 5)
    assert v.comparison.p == pytest.approx(ref.pvalue)
    assert (v.lo, v.hi) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert v.verdict == "inconclusive"  # the seed offsets are noise again without pairing
    cross = better[:, None] - worse[None, :]
    assert v.comparison.prob == pytest.approx(np.mean(cross > 0))
    sp = math.sqrt((better.var(ddof=1) + worse.var(ddof=1)) / 2)
    g = (better.mean() - worse.mean()) / sp * (1 - 3 / (4 * 10 - 9))  # Hedges' g
    assert v.comparison.effect == pytest.approx(g) and g > 0
    assert "Welch, unpaired (5+5 runs)" in v.reason


def test_no_effect_only_when_the_tost_interval_is_inside_the_margin():
    better, worse = correlated(shift=0.0003, noise=0.001)
    v = judge(ACC, sweep_of(two_sides(better, worse), [ACC]))
    d = better - worse
    lo, hi = stats.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert lo > -0.005 and hi < 0.005  # the TOST interval is inside the default margin
    assert v.verdict == "no effect" and v.margin == 0.005
    # the interval shown is the one that decided: the TOST interval, labelled as such
    assert (v.lo, v.hi) == pytest.approx((lo, hi))
    assert fmt_difference(v).endswith("(TOST 90%)")
    tight = {**ACC, "margin": max(abs(lo), abs(hi)) * 0.9}  # the same data, a tighter margin
    assert judge(tight, sweep_of(two_sides(better, worse), [tight])).verdict != "no effect"
    noisy_b, noisy_w = correlated(shift=0.0, noise=0.01)
    noisy = judge(ACC, sweep_of(two_sides(noisy_b, noisy_w), [ACC]))
    nd = noisy_b - noisy_w
    lo, hi = stats.t.interval(0.90, len(nd) - 1, loc=nd.mean(), scale=stats.sem(nd))
    assert max(abs(lo), abs(hi)) > 0.005 and noisy.verdict == "inconclusive"


def test_seeds_needed_is_the_smallest_deciding_n():
    noisy_b, noisy_w = correlated(shift=0.002, noise=0.004)
    v = judge(ACC, sweep_of(two_sides(noisy_b, noisy_w), [ACC]))
    assert v.verdict == "inconclusive" and math.isfinite(v.needed)
    sd, mean = (noisy_b - noisy_w).std(ddof=1), abs((noisy_b - noisy_w).mean())

    def decides(n: int) -> bool:
        width = sd / math.sqrt(n)
        return bool(
            stats.t.ppf(0.975, n - 1) * width < mean
            or stats.t.ppf(0.95, n - 1) * width < 0.005 - mean
        )

    n = int(v.needed)
    assert n > 5 and decides(n) and not decides(n - 1)
    never = {**ACC, "margin": 0.0}
    flat = judge(
        never, sweep_of(two_sides(np.array([1, 0, 1, 0, 0.5001]), np.full(5, 0.5)), [never])
    )
    assert flat.verdict == "inconclusive" and math.isinf(flat.needed)


def test_a_significant_difference_below_the_margin_says_so():
    better, worse = correlated(shift=0.002, n=8, noise=0.0002)
    v = judge(ACC, sweep_of(two_sides(better, worse), [ACC]))
    assert v.verdict == "supported" and v.lo > 0 and v.hi < 0.005
    assert v.label == "supported, smaller than the 0.5-point margin"


def test_wrong_direction_is_contradicted_and_lower_is_better_is_signed():
    better, worse = correlated(shift=-0.01)
    v = judge(ACC, sweep_of(two_sides(better, worse), [ACC]))
    assert v.verdict == "contradicted" and v.hi < 0 and v.comparison.wins == 0
    loss = {**ACC, "metric": "test/loss"}  # batch has the lower loss: as claimed
    runs = two_sides(1 - better - 0.02, 1 - worse, metric="test__loss")
    w = judge(loss, sweep_of(runs, [loss]))
    assert w.verdict == "supported" and w.comparison.mean == pytest.approx(0.02 - 0.01, abs=2e-3)


def test_holm_matches_the_reference_computation():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.01, math.nan, 0.02])  # an untested claim is not in the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    rng = np.random.default_rng(3)
    for _ in range(200):  # the decision level agrees with the adjusted p, step-down included
        p = list(rng.uniform(0, 0.08, rng.integers(1, 6)))
        adjusted, levels = holm(p), holm_levels(p)
        assert [a < 0.05 for a in adjusted] == [pi < lv for pi, lv in zip(p, levels, strict=True)]


def test_claims_of_a_report_are_holm_adjusted():
    rng = np.random.default_rng(5)
    offset = rng.normal(0, 0.02, 6)
    runs = []
    for norm, shift in (("none", 0.0), ("batch", 0.003), ("group", 0.0015), ("layer", 0.0)):
        runs += [
            run(s, f_norm=norm, test__acc=0.9 + o + shift + rng.normal(0, 0.002))
            for s, o in enumerate(offset)
        ]
    claims = [{**ACC, "text": f"{b} beats none", "better": b} for b in ("batch", "group", "layer")]
    verdicts = judge_all(sweep_of(runs, claims), claims)
    raw = [v.comparison.p for v in verdicts]
    assert [v.p_adj for v in verdicts] == pytest.approx(holm(raw))
    for v in verdicts:
        decided = v.verdict in ("supported", "contradicted")
        assert decided == (v.p_adj < 0.05) == (v.lo > 0 or v.hi < 0)
        assert v.method == "paired t, Holm over 3 claims, single look"


def test_interaction_claim_difference_of_differences():
    rng = np.random.default_rng(7)
    offset = rng.normal(0, 0.02, 5)
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
    assert v.comparison.n == 5 and v.better.mean == pytest.approx(0.96 - 0.975, abs=0.005)
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
        for s in range(3)
    ]
    claim = {**ACC, "nuisance": ["optim.lr"]}
    v = judge(claim, sweep_of(runs, [claim]))
    assert v.picks == {"norm=batch": "optim.lr=1.0", "norm=none": "optim.lr=0.01"}
    assert v.comparison.pairing == "paired" and v.comparison.n == 3  # paired by seed at the picks
    assert v.comparison.mean == pytest.approx(0.97 - 0.93, abs=3e-3) and v.verdict == "supported"
    plain = judge(ACC, sweep_of(runs, [ACC]))  # without nuisance: lr is matched, 9 pairs
    assert plain.comparison.n == 9 and not plain.picks
    md = section_claims(sweep_of(runs, [claim]), [v])
    assert (
        "nuisance picked on val/acc_best: norm=batch: optim.lr=1.0; norm=none: optim.lr=0.01" in md
    )


def simulate(effect: float, kind: str = "pocock", adjust: bool = True, studies: int = 2000):
    """Outcomes of `studies` sequential paired studies: 3 seeds, +2 per look, up to 4 looks."""
    ns = (3, 5, 7, 9)
    d = np.random.default_rng(11).normal(effect, 1.0, (studies, ns[-1]))
    result = np.full(studies, "inconclusive", dtype=object)
    for k, n in enumerate(ns, 1):
        alpha = look_alpha(k, len(ns), 0.05, kind, fractions=ns) if adjust else 0.05
        out = outcome(*paired_arrays(d[:, :n])[:3], alpha, margin=0.25)
        new = (result == "inconclusive") & (out != "inconclusive")
        result[new] = out[new]
    return result


def test_sequential_looks_keep_the_error_rate_and_have_power(record_property):
    se = math.sqrt(0.05 * 0.95 / 2000)
    for kind in ("pocock", "obrien-fleming"):
        null = simulate(0.0, kind)
        error = np.isin(null, ("supported", "contradicted")).mean()
        assert 0.02 < error <= 0.05 + 3 * se, (kind, error)
        power = (simulate(1.0, kind) == "supported").mean()
        record_property(f"power_{kind}", float(power))  # execnet sends plain floats only
        print(f"{kind}: type I error {error:.3f}, power at a 1-sd effect {power:.3f}")
        assert power > 0.5
    naive = np.isin(simulate(0.0, adjust=False), ("supported", "contradicted")).mean()
    assert naive > 0.05 + 3 * se  # looking 4 times at 0.05 each is what the spending prevents


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
    z = np.array([-1.2, -0.4, 0.1, 0.5, 1.0])
    z = (z - z.mean()) / z.std(ddof=1)
    d = z + stats.t.isf(0.015, 4) / math.sqrt(5)  # two-sided p = 0.03 exactly
    sweep = sweep_of(two_sides(0.9 + d / 100, np.full(5, 0.9)), [{**ACC, "margin": 1e-6}])
    assert judge(sweep.claims[0], sweep).p_adj == pytest.approx(0.03)
    assert judge(sweep.claims[0], sweep).verdict == "supported"
    look = judge(sweep.claims[0], sweep, looks=(2, 4))
    assert look.verdict == "inconclusive" and look.level == pytest.approx(look_alpha(2, 4))
    assert look.method == "paired t, Holm over 1 claims, Pocock spending at look 2 of 4"
    assert "Pocock spending at look 2 of 4" in section_claims(sweep, [look])
    assert plot_forest([look], tmp_path / "forest.png")
    assert (tmp_path / "forest.png").read_bytes().startswith(b"\x89PNG")
    assert not plot_forest([judge({"text": "no metric"}, sweep)], tmp_path / "none.png")


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
        for s in range(5)
    ]
    claim = {"text": "helps more with little data", "metric": "test/acc", "factor": "aug",
             "better": "light", "worse": "none", "higher_is_better": True,
             "by": {"key": "data.train_subset", "from": "null", "to": 1000}}  # fmt: skip
    v = judge(claim, sweep_of(runs, [claim]))
    assert v.verdict == "supported" and v.comparison.n == 5
    assert v.comparison.mean == pytest.approx(0.03, abs=0.005)


def test_sign_flip_permutation_p_is_exact_for_few_pairs_and_shown_beside_t():
    d = np.array([0.8, 0.8, 0.5, 0.1, 0.04, -0.004, -0.008, 0.0, 0.8, 0.8])  # bimodal: no normality
    # exact: of the 2^10 sign patterns, those whose |mean| reaches the observed one
    signs = np.array(np.meshgrid(*[[-1, 1]] * d.size)).reshape(d.size, -1).T
    means = np.abs((signs * d).mean(axis=1))
    exact = np.mean(means >= abs(d.mean()) - 1e-12)
    c = paired(d)
    assert c.perm_p == pytest.approx(exact) and c.p == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    sweep = sweep_of(two_sides(0.9 + d, np.full(d.size, 0.9)), [ACC])
    line = fmt_verdict(judge(ACC, sweep))
    assert f"{c.perm_p:.3g} (sign-flip permutation; at 10 pairs never below 0.00195)" in line

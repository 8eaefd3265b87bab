"""ablate.report on generated sweeps whose right answers are known."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("MPLBACKEND", "Agg")

from ablate import report  # noqa: E402
from ablate.report.judge.stats import mean_ci, sample, t975  # noqa: E402
from ablate.report.load.plan import load_plan  # noqa: E402
from ablate.report.render.figures import mean_curve  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
TARGET = 0.97
BUDGET = 1000
CLAIMS = [
    {
        "text": "BN reaches 97% val accuracy in fewer steps than no norm",
        "metric": "steps_to_target",
        "factor": "norm",
        "better": "batch",
        "worse": "none",
        "higher_is_better": False,
    },
    {
        "text": "No norm gives a higher test accuracy than BN",
        "metric": "test/acc",
        "factor": "norm",
        "better": "none",
        "worse": "batch",
        "higher_is_better": True,
    },
    {
        "text": "lr 0.1 gives a higher test accuracy than lr 0.01",
        "metric": "test/acc",
        "factor": "optim.lr",
        "better": "0.1",
        "worse": "0.01",
        "higher_is_better": True,
    },
    {
        "text": "At lr 0.1, BN gives a higher test accuracy than no norm",
        "metric": "test/acc",
        "factor": "norm",
        "better": "batch",
        "worse": "none",
        "higher_is_better": True,
        "where": {"optim.lr": 0.1},
    },
    {
        "text": "At lr 0.5 (never run), BN beats no norm",
        "metric": "test/acc",
        "factor": "norm",
        "better": "batch",
        "worse": "none",
        "where": {"optim.lr": 0.5},
    },
]
MULTIRUN_YAML = """\
hydra:
  run:
    dir: logs/runs/${now:%Y-%m-%d}
  sweeper:
    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper
    max_batch_size: null
    params: null
  overrides:
    hydra:
    - hydra.mode=MULTIRUN
    task:
    - norm=none,batch
    - optim.lr=0.01,0.1
    - seed=0,1,2,3
    - trainer=cpu
    - model.channels=[16,32]
seed: 0
"""


def history(tau: float, final: float, every: int = 20) -> list[dict]:
    """Validation history of a saturating curve val/acc = final * (1 - exp(-step / tau))."""
    return [
        {
            "step": s,
            "epoch": s // 500,
            "val/acc": final * (1 - math.exp(-s / tau)),
            "val/loss": math.exp(-s / tau),
            "train/loss": 2 * math.exp(-s / tau),
        }
        for s in range(every, BUDGET + 1, every)
    ]


def write_summary(sweep: Path, overrides: dict[str, object], status: str, **fields) -> Path:
    """Write <sweep>/<k=v,...>/summary.json in the layout ablate.train writes."""
    items = [f"{k}={v}" for k, v in overrides.items()]
    run_dir = sweep / ",".join(items)
    run_dir.mkdir(parents=True)
    seed = int(overrides.get("seed", 0))
    data = {
        "status": status,
        "seed": seed,
        "overrides": [*items, "trainer=cpu", "model.channels=[16,32]"],
        "swept": [*overrides],
        "choices": {"norm": overrides.get("norm", "batch"), "data": "mnist", "model": "cnn"},
        "config": {
            "data": {"dataset": "mnist", "train_subset": None, "batch_size": 128},
            "model": {"_target_": "ablate.models.CNN", "channels": [16, 32]},
            "optim": {"lr": float(overrides.get("optim.lr", 0.1))},
            "trainer": {"max_epochs": 2},
            "seed": seed,
            "report": {"target_acc": TARGET, "claims": CLAIMS},
        },
        "metrics": {},
        "history": [],
        "steps": BUDGET,
        "epochs": 2,
        "wall_time_s": 12.5,
        **fields,
    }
    path = run_dir / "summary.json"
    path.write_text(json.dumps(data))
    return path


def completed_fields(norm: str, rng: np.random.Generator) -> dict:
    """BN: test/acc ~ 0.99 and target reached at ~400 steps; no norm: 0.95 and ~650 steps."""
    acc = (0.99 if norm == "batch" else 0.95) + rng.normal(0, 0.002)
    tau = (100 if norm == "batch" else 150) * rng.uniform(0.9, 1.1)
    train_acc = acc + 0.005
    return {
        "metrics": {
            "test/acc": acc,
            "test/loss": 1 - acc,
            "val/acc_best": 0.985 * (1 - math.exp(-BUDGET / tau)),
            "train_eval/acc": train_acc,
            "gap/train_test": train_acc - acc,
            "gap/train_val": "nan",
        },
        "history": history(tau, 0.99 if norm == "batch" else 0.985),
    }


# The 2x2 sweep with 4 seeds, and what went wrong in it.
DIVERGED = {"norm": "none", "optim.lr": "0.1", "seed": 3}
FAILED = {"norm": "batch", "optim.lr": "0.01", "seed": 3}
RUNNING = {"norm": "batch", "optim.lr": "0.01", "seed": 2}
CORRUPT = {"norm": "batch", "optim.lr": "0.1", "seed": 3}
MISSING = {"norm": "none", "optim.lr": "0.01", "seed": 3}


def _name(overrides: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items())


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A partial 2-factor sweep: norm in {none, batch} x optim.lr in {0.01, 0.1} x seeds 0-3."""
    sweep = tmp_path_factory.mktemp("multirun")
    (sweep / "multirun.yaml").write_text(MULTIRUN_YAML)
    rng = np.random.default_rng(0)
    for norm in ("none", "batch"):
        for lr in ("0.01", "0.1"):
            for seed in range(4):
                ov = {"norm": norm, "optim.lr": lr, "seed": seed}
                if ov == MISSING:
                    continue
                if ov == DIVERGED:
                    hist = [{"step": 50, "val/acc": 0.3, "train/loss": "nan"}]
                    write_summary(sweep, ov, "diverged", diverged_at_step=37, history=hist)
                elif ov == FAILED:
                    write_summary(sweep, ov, "failed", error="RuntimeError: boom\nTraceback ...")
                elif ov == RUNNING:
                    write_summary(sweep, ov, "running", history=history(100, 0.9)[:3])
                elif ov == CORRUPT:
                    write_summary(sweep, ov, "completed").write_text('{"status": "compl')
                else:
                    write_summary(sweep, ov, "completed", **completed_fields(norm, rng))
    return sweep


@pytest.fixture(scope="module")
def built(sweep_dir: Path) -> Path:
    return report.build_report(sweep_dir)


def read_csv(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_t_interval_matches_hand_computation():
    stat = mean_ci([1.0, 2.0, 3.0])
    assert stat.n == 3 and stat.mean == pytest.approx(2.0) and stat.std == pytest.approx(1.0)
    assert stat.half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert stat.half == pytest.approx(2.484, abs=1e-3)
    assert (stat.lo, stat.hi) == pytest.approx((2 - 2.484, 2 + 2.484), abs=1e-3)


def test_t_interval_edge_cases():
    assert math.isnan(mean_ci([5.0]).half)  # n=1: no interval
    assert mean_ci([5.0]).mean == 5.0
    assert mean_ci([float("nan")]).n == 0
    assert t975(30) == pytest.approx(2.042272, abs=1e-6)
    assert t975(31) == pytest.approx(2.039513, abs=1e-6)  # scipy.stats.t, any df
    assert t975(120) == pytest.approx(1.979930, abs=1e-6)
    with pytest.raises(ValueError):
        t975(0)


def test_mean_curve_interpolates_different_steps():
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 1.0, 2.0]))
    b = (np.array([0.0, 5.0, 20.0]), np.array([2.0, 2.5, 4.0]))
    grid, mean, std = mean_curve([a, b])
    np.testing.assert_allclose(grid, [0, 5, 10, 20])
    np.testing.assert_allclose(mean, [1.0, 1.5, 2.0, 3.0])  # a at 5 -> 0.5, b at 10 -> 3.0
    np.testing.assert_allclose(std, np.std([[0, 0.5, 1, 2], [2, 2.5, 3, 4]], axis=0, ddof=1))


def test_plan_from_multirun_yaml(sweep_dir: Path):
    plan = load_plan(sweep_dir)
    assert plan.values == {
        "norm": ["none", "batch"],
        "optim.lr": ["0.01", "0.1"],
        "seed": ["0", "1", "2", "3"],
    }
    assert plan.expected_runs() == 16


def test_plan_with_glob_is_unknown(tmp_path: Path):
    text = MULTIRUN_YAML.replace("- seed=0,1,2,3", "- seed=range(0,3)").replace(
        "- norm=none,batch", "- norm=glob(*)"
    )
    (tmp_path / "multirun.yaml").write_text(text)
    plan = load_plan(tmp_path)
    assert plan.values["seed"] == ["0", "1", "2"]
    assert "norm" in plan.unknown and plan.expected_runs() is None


def test_a_plain_value_on_the_command_line_narrows_a_swept_key(tmp_path: Path):
    # a preset sweeps seed=100,101,102; `seed=0` on the command line runs seed 0 alone (Hydra does)
    text = MULTIRUN_YAML.replace(
        "params: null", "params:\n      seed: 100,101,102\n      optim.lr: 0.1,0.3"
    )
    text = text.replace("- seed=0,1,2,3", "- seed=0").replace("    - optim.lr=0.01,0.1\n", "")
    (tmp_path / "multirun.yaml").write_text(text)
    plan = load_plan(tmp_path)
    assert plan.values == {"seed": ["0"], "optim.lr": ["0.1", "0.3"], "norm": ["none", "batch"]}
    assert plan.expected_runs() == 4


def test_results_csv_one_row_per_run(built: Path, sweep_dir: Path):
    rows = read_csv(built)
    assert len(rows) == len(list(sweep_dir.rglob("summary.json"))) == 15
    assert list(rows[0])[:5] == ["run", "status", "seed", "norm", "optim.lr"]
    by_name = {r["run"]: r for r in rows}
    diverged = by_name[_name(DIVERGED)]
    assert diverged["status"] == "diverged"
    assert diverged["steps_to_target"] == "not reached"
    assert diverged["diverged_at_step"] == "37"
    assert by_name[_name(FAILED)]["error"] == "RuntimeError: boom"
    assert by_name[_name(CORRUPT)]["status"] == "corrupt"
    assert by_name[_name(CORRUPT)]["norm"] == "batch"  # recovered from the directory name
    assert by_name[_name(RUNNING)]["status"] == "running"
    first = by_name["norm=batch,optim.lr=0.1,seed=0"]
    assert first["gap/train_val"] == "nan"
    assert float(first["test/acc"]) == pytest.approx(0.99, abs=0.01)


def test_steps_to_target_is_first_step_reaching_target(sweep_dir: Path):
    sweep = report.load_sweep(sweep_dir)
    for run in sweep.runs:
        if run.completed:
            expected = next(h["step"] for h in run.history if h["val/acc"] >= TARGET)
            assert run.steps_to_target == expected
    running = next(r for r in sweep.runs if r.status == "running")
    assert running.steps_to_target is None  # 0.9 plateau: never reached


def test_verdicts(sweep_dir: Path):
    """Seeds 0-2 pair up (seed 3's batch runs failed or are unreadable, and none at lr 0.01 is
    missing); the exact test cannot decide at 3 seeds, whatever the differences."""
    sweep = report.load_sweep(sweep_dir)
    verdicts = {v.claim["text"]: v for v in (report.judge(c, sweep) for c in sweep.claims)}
    steps = verdicts[CLAIMS[0]["text"]]
    # one outcome per seed: optim.lr averaged over the levels both arms have at that seed (seed 2
    # at lr 0.01 is still running for batch, so seed 2 compares lr 0.1 alone)
    assert steps.comparison.pairing == "paired" and steps.comparison.n == 3
    assert steps.worse.n == steps.better.n == 3 and steps.comparison.wins == 3
    assert steps.comparison.mean > 0  # lower is better: positive = batch needs fewer steps
    assert "3 seeds, `optim.lr` averaged: 3 as claimed" in steps.reason
    assert "reached the target: 3/3, 3/3" in steps.reason
    wrong_way = verdicts[CLAIMS[1]["text"]]
    assert wrong_way.comparison.losses == 3 and wrong_way.hi < 0
    for v in (steps, wrong_way, verdicts[CLAIMS[2]["text"]], verdicts[CLAIMS[3]["text"]]):
        assert v.verdict == "inconclusive" and v.p_adj >= 0.25  # 3 seeds: 2/2^3 at best
        assert "an exact test needs 8 seeds with a sign to reach p <= 0.0125" in v.reason
        assert v.method == "exact sign-flip, Holm over 4 claims, single look"
    where = verdicts[CLAIMS[3]["text"]]
    assert (where.better.n, where.worse.n) == (3, 3)
    empty = verdicts[CLAIMS[4]["text"]]
    assert empty.verdict == "inconclusive" and empty.better.n == 0


def test_summary_md(built: Path, sweep_dir: Path):
    md = (built / "summary.md").read_text()
    assert str(sweep_dir) in md.splitlines()[0]
    assert "## What was run" in md and "`mnist`" in md and "`cnn`" in md
    assert "`norm` ∈ {none, batch}" in md and "`optim.lr` ∈ {0.01, 0.1}" in md
    assert "4 cells** of 4 planned" in md
    assert (
        "16 runs planned, 15 found: 11 completed, 1 diverged, 1 failed, 1 running, 1 corrupt, 1 missing"
        in md
    )
    assert "- norm=none, optim.lr=0.01, seed=3" in md
    assert f"`{_name(CORRUPT)}`: unreadable summary.json" in md
    assert f"`{_name(DIVERGED)}` at step 37" in md
    assert "RuntimeError: boom" in md
    assert "## Results per cell" in md and "## Marginal effects" in md
    assert "## Pivot tables" in md and "norm \\ optim.lr" in md
    assert md.count("- **inconclusive**") == 5  # 3 seeds pair up: too few for the exact test
    assert "diverged runs included" in md and "3 seeds, `optim.lr` averaged: 3 as claimed" in md
    # the claims table and forest plot come right after "What was run"
    assert md.index("## What was run") < md.index("## Claims") < md.index("## Status")
    assert md.index("](forest.png)") < md.index(
        "| claim | difference [95% CI] | for/against/tied |"
    )
    assert md.count("](forest.png)") == 1
    assert "| 3/0/0 |" in md and "| 0/3/0 |" in md and "| 0.25 > 0.013 |" in md
    assert "not reached (0/" not in md  # every completed run reached the target
    for png in ("curves_val_acc.png", "curves_train_loss.png", "bar_norm.png", "bar_optim.lr.png"):
        assert f"]({png})" in md


def test_plots_exist(built: Path):
    pngs = ("curves_val_acc.png", "curves_train_loss.png", "bar_norm.png", "bar_optim.lr.png")
    for png in (*pngs, "forest.png"):
        data = (built / png).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000


def test_report_dir_is_skipped_on_rerun(built: Path, sweep_dir: Path):
    (built / "summary.json").write_text("{}")  # must not be read as a run
    try:
        assert len(report.load_sweep(sweep_dir).runs) == 15
    finally:
        (built / "summary.json").unlink()


def test_a_study_gets_its_section_right_after_the_claims(tmp_path: Path, sweep_dir: Path):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("report"))
    plain = (report.build_report(copy) / "summary.md").read_text()
    assert "## Sequential study" not in plain
    cells = [{"norm": n, "optim.lr": lr} for n in ("none", "batch") for lr in ("0.01", "0.1")]
    study = {
        "factors": {"norm": ["none", "batch"], "optim.lr": ["0.01", "0.1"]},
        "looks": 2, "max_seeds": 4, "add": 1, "fractions": [3, 4], "stopped": "seed cap",
        "rounds": [
            {"look": 1, "seeds": [0, 1, 2], "cells": cells, "new_runs": 12, "decided": 0,
             "undecided": 1, "verdicts": [{"text": CLAIMS[0]["text"], "verdict": "inconclusive"}]},
            {"look": 2, "seeds": [0, 1, 2, 3], "cells": cells[:2], "new_runs": 2},
        ],
    }  # fmt: skip
    (copy / "study.json").write_text(json.dumps(study))
    md = (report.build_report(copy) / "summary.md").read_text()
    assert md.index("## Claims") < md.index("## Sequential study") < md.index("## Status")
    assert "| 1 of 2 | 3 (seeds 0–2) | 4 | 12 | 0 | 1 |" in md
    assert "| 2 of 2 | 4 (seeds 0–3) | 2 | 2 | — | — |" in md
    assert "Stopped: seed cap." in md and "Pocock spending at look 1 of 2" in md
    # everything but the study's own lines reads as before (its plan: 14 runs, not multirun.yaml's)
    assert md.split("## Sequential study")[0].split("## Claims")[0] == plain.split("## Claims")[0]


def test_without_plan_or_swept(tmp_path: Path):
    """No multirun.yaml, no `swept`: every override key is a factor, counts only; no target."""
    for norm in ("none", "batch"):
        path = write_summary(tmp_path, {"norm": norm}, "running")
        data = json.loads(path.read_text())
        del data["swept"], data["config"]["report"]
        data["overrides"] = [f"norm={norm}"]
        path.write_text(json.dumps(data))
    out = report.build_report(tmp_path)
    md = (out / "summary.md").read_text()
    assert "2 runs found (no multirun.yaml: expected count unknown): 0 completed" in md
    assert "2 running" in md and "No plot" in md and "No claims" in md
    rows = read_csv(out)
    assert [r["norm"] for r in rows] == ["batch", "none"] and rows[0]["steps_to_target"] == ""
    assert not list(out.glob("*.png"))


def test_main_cli(tmp_path: Path, sweep_dir: Path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    assert "no such sweep directory" in capsys.readouterr().err
    assert report.main([str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
    assert report.main([str(sweep_dir)]) == 0
    assert (sweep_dir / "report" / "summary.md").is_file()
    for bad in (["--looks", "3", "2"], ["--looks", "1"], [], ["--bogus"]):  # one line, exit 2
        with pytest.raises(SystemExit) as exit_:
            report.main([*bad, str(sweep_dir)] if bad != [] else [])
        assert exit_.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("python -m ablate.report: error: ") and line.endswith("(see --help)")


def test_val_acc_best_of_diverged_runs_counts_in_claims(tmp_path: Path):
    """A claim 'batch still trains where none diverges' must see the diverged runs' chance accuracy."""
    from ablate.report import build_report

    claims = [
        {"text": "BN trains at lr 1.0", "metric": "val/acc_best", "factor": "norm",
         "better": "batch", "worse": "none", "higher_is_better": True},
    ]  # fmt: skip
    for seed in range(6):
        for norm, status, acc in (
            ("batch", "completed", 0.97 + seed / 1000),
            ("none", "diverged", 0.1 + seed / 1000),
        ):
            path = write_summary(
                tmp_path, {"norm": norm, "seed": seed}, status, metrics={"val/acc_best": acc}
            )
            data = json.loads(path.read_text())
            data["config"]["report"]["claims"] = claims
            path.write_text(json.dumps(data))
    summary_md = (build_report(tmp_path) / "summary.md").read_text()
    assert "- **supported**: “BN trains at lr 1.0”" in summary_md


def test_cost_beside_quality_and_the_code_the_runs_came_from(tmp_path: Path):
    """Per cell: accuracy, mean images/s, wall time per run and its total; cost.png; the commit."""
    for norm, speed in (("none", 3000.0), ("batch", 2000.0)):
        for seed, wall in ((0, 10.0), (1, 14.0)):
            write_summary(
                tmp_path,
                {"norm": norm, "seed": seed},
                "completed",
                metrics={"test/acc": 0.9 + seed / 100, "perf/train_images_per_s": speed + seed},
                wall_time_s=wall + (norm == "batch"),
                git_commit="0123456789abcdef",
                versions={"python": "3.11.7", "torch": "2.15.0", "lightning": "2.6.6"},
            )
    out = report.build_report(tmp_path)
    md = (out / "summary.md").read_text()
    assert "Code: commit `0123456789ab`; python 3.11.7, torch 2.15.0, lightning 2.6.6." in md
    assert "Mixed code" not in md
    section = md[md.index("## Cost beside quality") : md.index("## Marginal effects")]
    assert "| none | 0.9050 ± 0.0071 [0.8415, 0.9685] | 3,000 | 12.0 (10.0–14.0) | 0.4 |" in section
    assert (
        "| batch | 0.9050 ± 0.0071 [0.8415, 0.9685] | 2,000 | 13.0 (11.0–15.0) | 0.4 |" in section
    )
    assert (out / "cost.png").read_bytes().startswith(PNG) and "](cost.png)" in md


def test_runs_from_several_commits_are_flagged(tmp_path: Path):
    for seed, commit in (
        (0, "aaaaaaaaaaaaaaaa"),
        (1, "aaaaaaaaaaaaaaaa"),
        (2, "bbbbbbbbbbbb-dirty"),
    ):
        write_summary(
            tmp_path, {"norm": "none", "seed": seed}, "completed", git_commit=commit,
            metrics={"test/acc": 0.9},
        )  # fmt: skip
    md = (report.build_report(tmp_path) / "summary.md").read_text()
    assert (
        "**Mixed code: the runs come from 2 commits** (`aaaaaaaaaaaa` (2 runs); `bbbbbbbbbbbb-dirty` (1 run))"
        in md
    )


def test_the_machine_the_runs_trained_on_is_named_and_a_mix_is_counted(tmp_path: Path):
    for seed, where in enumerate(["x86_64, 2 CPUs", "x86_64, 2 CPUs", "x86_64, 16 CPUs, 1 x GPU"]):
        write_summary(
            tmp_path, {"norm": "none", "seed": seed}, "completed", git_commit="a" * 16,
            metrics={"test/acc": 0.9}, machine=where,
        )  # fmt: skip
    md = (report.build_report(tmp_path) / "summary.md").read_text()
    assert "; machine: x86_64, 2 CPUs (2 runs) | x86_64, 16 CPUs, 1 x GPU (1 run)." in md


@pytest.mark.parametrize("mixed", [False, True])
def test_the_cpu_models_and_capabilities_are_named_and_a_mix_is_flagged(tmp_path: Path, mixed):
    amd, intel = ("AMD EPYC 7B13", "AVX2", []), ("Intel Xeon 8481C", "AVX512", ["NVIDIA H100"])
    for seed, (cpu, cap, gpus) in enumerate([amd, amd, intel if mixed else amd]):
        write_summary(
            tmp_path, {"norm": "none", "seed": seed}, "completed", git_commit="a" * 16,
            metrics={"test/acc": 0.9}, cpu_model=cpu, cpu_capability=cap, gpu_models=gpus,
        )  # fmt: skip
    md = (report.build_report(tmp_path) / "summary.md").read_text()
    if not mixed:
        assert "Hardware: AMD EPYC 7B13, torch CPU capability AVX2: the digits" in md
        assert "Mixed hardware" not in md
        return
    assert (
        "**Mixed hardware: the runs come from 2 kinds of machine** (AMD EPYC 7B13, torch "
        "CPU capability AVX2 (2 runs) | Intel Xeon 8481C, torch CPU capability AVX512, GPU "
        "NVIDIA H100 (1 run)): results are bitwise the same only on the same hardware" in md
    )


def test_accuracy_curves_plot_data_inside_0_1_and_two_factors_as_colour_and_style(
    sweep_dir: Path, tmp_path: Path, monkeypatch
):
    """Check the plotted data, not the pixels: every line of the val/acc plot stays in [0, 1], the
    axes say so, and the first factor is the colour, the second the line style."""
    from ablate.report.load.sweep import load_sweep
    from ablate.report.render import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    sweep = load_sweep(sweep_dir)
    for run in sweep.runs:  # seeds that end at 0.999 with a spread: a std band would pass 1.0
        for entry in run.history:
            entry["val/acc"] = min(1.0, float(entry.get("val/acc", 0)) * 1.02)
    assert plots.plot_curves(sweep, "val/acc", tmp_path / "c.png")
    (ax,) = [a for a in figures[0].axes if a.get_ylabel()]
    ys = np.concatenate([line.get_ydata() for line in ax.get_lines()])
    assert ys.size and np.nanmax(ys) <= 1.0 and np.nanmin(ys) >= 0.0
    assert ax.get_ylim()[1] <= 1.0 and not ax.collections  # no fill_between band
    assert ax.get_xlabel() == "training step (optimizer steps)"
    assert ax.get_ylabel() == "val/acc (fraction correct)"
    bold = [line for line in ax.get_lines() if line.get_linewidth() > 2]
    by_label = {line.get_label().split(" (n=")[0]: line for line in bold}
    a, b = by_label["norm=none, optim.lr=0.01"], by_label["norm=none, optim.lr=0.1"]
    c = by_label["norm=batch, optim.lr=0.01"]
    assert a.get_color() == b.get_color() != c.get_color()
    assert a.get_linestyle() == c.get_linestyle() != b.get_linestyle()


def test_curves_of_different_batch_sizes_are_drawn_against_images_seen(
    sweep_dir: Path, tmp_path: Path, monkeypatch
):
    """Batch 32 and batch 2 at equal epochs end at equal images, not at equal steps."""
    from ablate.report.load.sweep import load_sweep
    from ablate.report.render import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    sweep = load_sweep(sweep_dir)
    sizes = {}
    for i, run in enumerate(sweep.runs):
        sizes[run.name] = 2 if i % 2 else 32
        if i % 3:  # swept: the override as typed; else from the resolved config
            run.overrides["data.batch_size"] = str(sizes[run.name])
        else:
            run.config.setdefault("data", {})["batch_size"] = sizes[run.name]
    assert plots.plot_curves(sweep, "val/acc", tmp_path / "c.png")
    (ax,) = [a for a in figures[0].axes if a.get_ylabel()]
    assert ax.get_xlabel() == "training images seen (thousands)"
    thin = [line for line in ax.get_lines() if line.get_linewidth() < 1]
    last_steps = {r.name: r.series("val/acc")[0][-1] for r in sweep.runs if r.completed}
    expected = sorted(last_steps[n] * sizes[n] / 1000 for n in last_steps)
    assert sorted(line.get_xdata()[-1] for line in thin) == pytest.approx(expected)


def test_the_forest_plot_shows_the_verdicts_of_the_claims_table(
    tmp_path: Path, sweep_dir, monkeypatch
):
    # a study's report judges at its last look: the forest plot must not re-judge at a single look
    import shutil

    from ablate.report import judge_sweep
    from ablate.report.render import forest

    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy, ignore=shutil.ignore_patterns("report"))
    drawn = []
    monkeypatch.setattr(
        forest, "plot_forest", lambda verdicts, path: drawn.append(verdicts) or True
    )
    report.build_report(copy, looks=(1, 5))
    at_look = judge_sweep(copy, (1, 5))[2]
    single = judge_sweep(copy)[2]
    key = lambda vs: [(v.claim.get("text"), v.verdict, v.level, v.method) for v in vs]  # noqa: E731
    assert key(drawn[0]) == key(at_look) != key(single)


def test_a_claim_with_nothing_to_compare_gets_a_forest_row_saying_why(sweep_dir, monkeypatch):
    import matplotlib.figure

    from ablate.report import judge_sweep
    from ablate.report.render import forest

    verdicts = judge_sweep(sweep_dir)[2]
    never_run = [v for v in verdicts if v.comparison is None]
    assert never_run and len(never_run) < len(verdicts)  # the lr 0.5 claim: no runs at all
    figures = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: figures.append(fig)
    )
    assert forest.plot_forest(verdicts, Path("unused.png"))
    (ax,) = figures[0].axes
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert len(rows) == len(verdicts) and never_run[0].claim["text"][:30] in " ".join(rows)
    notes = [t.get_text() for t in ax.texts if t.get_text().startswith("not compared:")]
    assert len(notes) == len(never_run)
    assert not forest.plot_forest(never_run, Path("unused.png"))  # nothing to draw: no file


def test_cost_plot_legend_shows_colour_per_first_factor_and_marker_per_second(
    sweep_dir: Path, tmp_path: Path, monkeypatch
):
    from ablate.report.load.sweep import load_sweep
    from ablate.report.render import cost

    figures = []
    monkeypatch.setattr(cost, "save_figure", lambda fig, path: figures.append(fig))
    assert cost.plot_cost(load_sweep(sweep_dir), tmp_path / "cost.png")
    handles, labels = figures[0].axes[0].get_legend_handles_labels()
    shown = dict(zip(labels, handles, strict=True))
    a, b = shown["norm=none, optim.lr=0.01"], shown["norm=none, optim.lr=0.1"]
    c = shown["norm=batch, optim.lr=0.01"]
    assert a.get_color() == b.get_color() != c.get_color()
    assert a.get_marker() == c.get_marker() != b.get_marker()
    assert all(h.get_linestyle() == "None" for h in handles)  # markers alone, no error bars


def test_claims_judge_a_never_reached_target_as_censored_last():
    from ablate.report.judge import reached_target
    from ablate.report.judge.pairs import outcome
    from ablate.report.load import Run

    reached = Run("a", "completed", steps_to_target=300.0)
    never = Run("b", "completed", steps_to_target=None)
    diverged = Run("c", "diverged", steps_to_target=200.0)  # crossed the target, then diverged
    failed = Run("e", "failed")
    assert [reached_target(r) for r in (reached, never, diverged)] == [300.0, None, None]
    outcomes = [outcome(r, "steps_to_target", False) for r in (reached, never, diverged, failed)]
    assert outcomes == [300.0, math.inf, math.inf, math.inf]  # the worst rank, not the budget
    running = Run("d", "running", steps_to_target=100.0)  # not a result yet: no outcome
    assert outcome(running, "steps_to_target", False) is None
    assert sample([reached, never, diverged, running], "steps_to_target") == [300.0]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.floats(0.001, 1e4, allow_nan=False), st.floats(0.0, 1.0))
def test_cost_plot_takes_equal_wall_times_whatever_their_mean_rounds_to(sweep_dir, wall, spread):
    # a group's seeds share its wall time equally: the mean of equal floats can round past their max
    from dataclasses import replace

    from ablate.report.load.sweep import load_sweep
    from ablate.report.render import cost

    sweep = load_sweep(sweep_dir)
    runs = [
        replace(r, wall_time_s=wall * (1 + spread * (i % 2) * 1e-15))
        for i, r in enumerate(sweep.runs)
    ]
    drawn = []
    original = cost.save_figure
    cost.save_figure = lambda fig, path: (drawn.append(path), cost.pyplot().close(fig))
    try:
        assert cost.plot_cost(replace(sweep, runs=runs), Path("unused.png"))
    finally:
        cost.save_figure = original
    assert drawn

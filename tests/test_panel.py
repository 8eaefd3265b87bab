"""The open choices (report.open): the headline at the primary setup, the panel at every setup,
the study extending every setup, bad declarations refused; then a shrunk grid study end to end."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import forked_cli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ablate.report.judge.sweep import judge_report
from ablate.report.load.setups import label, setups, with_setup, without_setup
from ablate.study.design import StudyError, read_design
from ablate.study.rounds import cells_to_extend
from tests.conftest import fast_overrides

REPO = Path(__file__).resolve().parents[1]
CLAIM = {"text": "BN beats none", "metric": "test/acc", "factor": "norm", "better": "batch",
         "worse": "none", "higher_is_better": True}  # fmt: skip


def _run(sweep: Path, norm: str, init: str, seed: int, acc: float | None, report: dict) -> None:
    """One summary.json; acc None: a run that failed before its first step."""
    run = sweep / f"init={init},norm={norm},seed={seed}"
    run.mkdir(parents=True)
    data = {
        "status": "completed" if acc is not None else "failed", "seed": seed,
        "overrides": [f"init={init}", f"norm={norm}", f"seed={seed}"],
        "swept": ["init", "norm", "seed"], "choices": {"norm": norm, "init": init},
        "config": {"seed": seed, "report": report},
        "metrics": {} if acc is None else {"test/acc": acc, "val/acc_best": acc},
        "steps": 0 if acc is None else 100, "wall_time_s": 1.0,
        "error": "ConfigError: norm.groups=8 does not divide 30" if acc is None else None,
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(data))


def _sweep(tmp: Path, effects: dict[str, float | None], seeds: int = 8, **report) -> Path:
    """init levels -> BN's true gain there (None: the BN arm cannot be built at that init)."""
    block = {"claims": [CLAIM], "open": {"init": next(iter(effects))}, **report}
    for init, gain in effects.items():
        for seed in range(seeds):
            noise = 0.001 * ((seed * 7) % 5)  # the same small spread on both arms
            _run(tmp, "none", init, seed, 0.80 + noise, block)
            _run(tmp, "batch", init, seed, None if gain is None else 0.80 + gain + noise, block)
    return tmp


def test_the_headline_is_judged_at_the_primary_setup_and_the_panel_at_every_setup(tmp_path):
    sweep = _sweep(tmp_path, {"gaussian": 0.05, "xavier": 0.0, "he": -0.03})
    loaded, _, verdicts, panel = judge_report(sweep)
    (headline,) = verdicts
    assert headline.verdict == "supported" and headline.claim["where"] == {"init": "gaussian"}
    assert headline.comparison.mean == pytest.approx(0.05)  # the gaussian runs alone
    assert panel is not None and [s["init"] for s in panel.setups] == ["gaussian", "he", "xavier"]
    row = [v.verdict for v in panel.cells[0]]
    assert row == ["supported", "contradicted", "not tested"]  # xavier: identical arms
    assert panel.cells[0][0] is headline  # exploratory: the primary column is the headline
    assert panel.scope(0) == (
        "holds in 1 of 3 setups; contradicted in: init=he; not tested in: init=xavier"
    )
    assert panel.count(0) == "1 of 3"


def test_a_setup_that_cannot_be_built_is_reported_as_such_and_the_others_judged(tmp_path):
    sweep = _sweep(tmp_path, {"gaussian": 0.05, "xavier": None})
    _, _, _, panel = judge_report(sweep)
    first, second = panel.cells[0]
    assert first.verdict == "supported"
    assert second.verdict == "not built" and "does not divide 30" in second.reason
    assert panel.scope(0) == "holds in 1 of 2 setups; not built in: init=xavier"


def test_a_confirmatory_panel_is_one_holm_family_over_claims_and_setups(tmp_path):
    sweep = _sweep(tmp_path, {"gaussian": 0.05, "xavier": 0.05, "he": 0.05}, panel="confirmatory")
    _, _, verdicts, panel = judge_report(sweep)
    assert (
        "one Holm family of 3" in panel.method and "Holm over 3 claims" in panel.cells[0][1].method
    )
    assert panel.cells[0][0] is not verdicts[0]  # judged in the joint family, not the headline's
    assert all(v.verdict == "supported" for v in panel.cells[0])  # 8 seeds: p = 2/256 <= 0.05/3


def test_a_declaration_that_cannot_be_judged_is_reported_and_the_claims_judged_as_written(tmp_path):
    for bad, why in (({"optim.momentum": 0.9}, "not swept"), ({"init": "lecun"}, "not among")):
        root = tmp_path / why.replace(" ", "_")
        _sweep(root, {"gaussian": 0.05, "xavier": 0.0})
        for path in root.glob("*/summary.json"):
            data = json.loads(path.read_text())
            data["config"]["report"]["open"] = bad
            path.write_text(json.dumps(data))
        sweep, _, verdicts, panel = judge_report(root)
        assert panel is None and len(sweep.problems) == 1 and why in sweep.problems[0]
        assert "where" not in verdicts[0].claim  # both inits pooled, as the claim is written


def test_a_study_extends_a_headline_claims_cells_at_every_setup():
    factors = {"norm": ["none", "batch"], "init": ["gaussian", "xavier"], "optim.lr": ["0.1"]}
    from ablate.report.judge.verdicts import Verdict

    headline = with_setup(CLAIM, {"init": "gaussian", "optim.lr": "0.1"})
    cells = cells_to_extend([Verdict(headline, "inconclusive", "", comparison=object())], factors)
    assert sorted(cells) == sorted(
        (n, i, "0.1") for n in ("none", "batch") for i in ("gaussian", "xavier")
    )


setup_values = st.dictionaries(
    st.sampled_from(["init", "optim.momentum", "data.standardize", "norm", "model.width"]),
    st.sampled_from(["0", "0.9", "true", "gaussian", "batch"]),
    max_size=4,
)


@given(setup_values, setup_values, st.dictionaries(st.sampled_from(["init", "data.batch_size"]),
                                                    st.sampled_from(["a", "b"]), max_size=2))  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_a_claim_at_a_setup_keeps_its_own_where_and_factor_and_comes_back_as_written(a, b, where):
    claim = {**CLAIM, "where": where} if where else dict(CLAIM)
    at_a = with_setup(claim, a)
    at_b = with_setup(at_a, b)  # re-targeting a headline claim replaces the setup, never stacks
    assert without_setup(at_b) == claim and without_setup(at_a) == claim
    for key, value in where.items():
        assert at_b["where"][key] == value  # the claim's own restriction wins
    assert "norm" not in at_b["where"]  # the claim's factor is never fixed by a setup
    assert {k: v for k, v in b.items() if k not in where and k != "norm"} == at_b["setup"]


def test_the_grid_lists_the_primary_first_and_labels_setups_by_what_differs():
    grid = setups({"init": "xavier", "optim.momentum": 0.0}, {"init": ["gaussian", "xavier"],
                                                            "optim.momentum": ["0", "0.9"]})  # fmt: skip
    assert grid[0] == {"init": "xavier", "optim.momentum": "0"} and len(grid) == 4
    assert [label(s, grid[0]) for s in grid] == [
        "primary", "init=gaussian", "init=gaussian, optim.momentum=0.9", "optim.momentum=0.9",
    ]  # fmt: skip


def test_the_study_refuses_an_open_choice_it_does_not_sweep_before_anything_runs(tmp_path):
    with pytest.raises(StudyError, match=r"report\.open\.optim\.momentum: not swept") as e:
        read_design("experiment=seeds_default_quick", ["+report.open={optim.momentum: 0.0}",
                                                       f"hydra.sweep.dir={tmp_path / 's'}"])  # fmt: skip
    assert e.value.code == 2 and not (tmp_path / "s").exists()
    with pytest.raises(StudyError, match=r"report\.open\.init=lecun: not among its swept levels"):
        read_design("experiment=bn_mlp_quick", ["report.open.init=lecun"])
    with pytest.raises(StudyError, match=r"report\.panel=both: must be one of"):
        read_design("experiment=bn_mlp_quick", ["report.panel=both"])


def test_a_shrunk_grid_study_runs_end_to_end_with_a_panel_cell_per_claim_and_setup(
    data_root, tmp_path
):
    # MLP widths 32 and 30 with GroupNorm's 8 groups: the width-30 GroupNorm runs cannot be built
    # (a grid point that refuses an option); every other run trains and the panel says so.
    claims = (
        "[{text: GN beats none, metric: test/acc, factor: norm, better: group, worse: none},"
        " {text: GN reaches 0.5 sooner, metric: steps_to_target, factor: norm, better: group,"
        " worse: none}]"
    )
    sweep = tmp_path / "sweep"
    args = [
        "experiment=bn_mlp_quick", "--max-seeds", "2", "--",
        *fast_overrides(data_root, tmp_path), "data.train_subset=200", "trainer.max_epochs=-1",
        "trainer.max_steps=6", "trainer.val_check_interval=3", "logger=none",
        'hydra.sweeper.params.seed="0,1"', 'hydra.sweeper.params.norm="none,group"',
        "init=gaussian", "optim.momentum=0", "data.standardize=false",  # one setup of bn_mlp's grid
        "model.width=32,30", "~report.open", "+report.open={model.width: 32}", "report.target_acc=0.5",
        f"report.claims={claims}", f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "MPLBACKEND": "Agg"}
    proc = forked_cli.run_program(["-m", "ablate.study", *args], REPO, env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    statuses = sorted(
        (p.parent.name, json.loads(p.read_text())["status"]) for p in sweep.glob("*/summary.json")
    )
    assert [s for n, s in statuses if "width=30,norm=group" in n] == ["failed", "failed"]
    assert sum(s == "completed" for _, s in statuses) == 6
    md = (sweep / "report" / "summary.md").read_text()
    section = md.split("## Across the open choices", 1)[1].split("\n## ", 1)[0]
    assert "| setup | (1) GN beats none | (2) GN reaches 0.5 sooner |" in section
    (primary,) = [line for line in section.splitlines() if line.startswith("| **primary** |")]
    (other,) = [line for line in section.splitlines() if line.startswith("| model.width=30 |")]
    assert "not built" not in primary and other.count("**not built**: ") == 2
    for i, text in enumerate(("GN beats none", "GN reaches 0.5 sooner")):
        line = re.search(rf"- \({i + 1}\) “{text}”: holds in (\d) of 2 setups([^\n]*)", section)
        assert line is not None, section
        assert "not built in: model.width=30" in line.group(2)
    for png in ("panel.png", "curves_primary_val_acc.png"):
        assert (sweep / "report" / png).stat().st_size > 10_000


PRESETS = sorted((REPO / "conf" / "experiment").glob("*.yaml"))
HEADINGS = ("# Paper states", "# Paper leaves open", "# Budget forced")


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_every_preset_header_separates_what_the_paper_states_leaves_open_and_budget_forced(path):
    lines = path.read_text().splitlines()
    header = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    found = [next((i for i, line in enumerate(header) if line.startswith(h)), -1) for h in HEADINGS]
    assert -1 not in found, f"{path.name}: missing {HEADINGS[found.index(-1)]} in its header"
    assert found == sorted(found), f"{path.name}: the three lists are not in order"
    full = path.with_name(path.stem.removesuffix("_quick") + ".yaml").read_text()  # a quick's own
    assert "\n# Supported if" in full or "Not a claim" in full or "Speedrun" in full


@pytest.mark.parametrize(
    "path", [p for p in PRESETS if "\n  open:" in p.read_text()], ids=lambda p: p.stem
)
def test_a_preset_that_declares_open_choices_sweeps_them_with_its_primary_among_the_levels(path):
    design = read_design(f"experiment={path.stem}", [])  # raises StudyError on a bad declaration
    assert design.claims >= 1 and len(design.factors) >= 2

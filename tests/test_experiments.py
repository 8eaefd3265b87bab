"""Study presets: each composes at both scales (<name> and <name>_quick), sweeps its factors over >= 3 seeds, and its claims name swept factors;
one preset runs for real (shrunk) and its report counts and judges what ran."""

from __future__ import annotations

import json
import re

import pytest
from conftest import fast_overrides, primary_setup, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.report.judge import METRIC_FACTOR
from ablate.validate import value_problems

EXPERIMENTS = sorted(  # speedrun_* are timed single runs, not studies: tests/test_speedrun.py
    p.stem
    for p in (CONF_DIR / "experiment").glob("*.yaml")
    if not p.stem.endswith("_quick") and not p.stem.startswith("speedrun_")
)


def compose_preset(name: str) -> dict:
    """The preset's composed config as a plain dict."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose("train", overrides=[f"experiment={name}"]))


def _sweep_values(spec: str) -> list[str]:
    override = OverridesParser.create().parse_overrides([f"k={spec}"])[0]
    return list(override.sweep_string_iterator()) if override.is_sweep_override() else [spec]


@pytest.mark.parametrize("scale", ["full", "quick"])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_preset_composes_and_sweeps_claimed_factors_over_seeds(name, scale):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"experiment={name}{'_quick' if scale == 'quick' else ''}"],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    params = cfg.hydra.sweeper.params
    assert len(_sweep_values(params["seed"])) >= 3
    assert value_problems(cfg) == []
    for claim in cfg.get("report", {}).get("claims", []):
        # an unquoted comma in a flow mapping ({text: 1,000 images, ...}) splits the text into a stray key
        assert set(claim) <= {
            "text",
            "metric",
            "factor",
            "better",
            "worse",
            "higher_is_better",
            "where",
            "by",
            "margin",
            "nuisance",
        }, claim
        if claim.factor == METRIC_FACTOR:  # two metrics of the same runs: named, not swept
            assert claim.better != claim.worse and claim.metric in (claim.better, claim.worse)
        else:
            assert claim.factor in params, claim.text
            levels = _sweep_values(params[claim.factor])
            assert str(claim.better) in levels and str(claim.worse) in levels, claim.text
        for key, value in (claim.get("where") or {}).items():
            assert str(value) in _sweep_values(params[key]), claim.text
        if by := claim.get("by"):  # an interaction: both levels of a swept key
            assert {str(by["from"]), str(by["to"])} <= set(_sweep_values(params[by.key])), (
                claim.text
            )
        for key in claim.get("nuisance") or []:
            assert key in params, claim.text
    assert cfg.hydra.sweep.dir.endswith(name + ("_quick" if scale == "quick" else ""))
    if scale == "quick":  # CPU scale: the small datasets, or a CIFAR-10 subset
        small = cfg.data.dataset in ("mnist", "fashion_mnist")
        assert small or (cfg.data.train_subset or 50_000) <= 10_000, name


def test_plus_experiment_spelling_is_accepted(tmp_path):
    proc = run_cli("+experiment=seeds_default", f"log_dir={tmp_path}", "--cfg", "hydra")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed: 0,1,2,3,4" in proc.stdout


def test_a_shrunk_real_sweep_reports_every_run(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [
        o for o in fast_overrides(data_root, tmp_path) if not o.startswith("trainer.max_epochs")
    ]
    proc = run_cli(
        "-m",
        "experiment=reg_gap_quick",
        *overrides,
        "trainer.max_epochs=1",
        "data.train_subset=300",
        'hydra.sweeper.params.reg="none,dropout"',
        'hydra.sweeper.params.seed="0,1"',
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = sorted(p.parent.name for p in sweep.rglob("summary.json"))
    assert runs == [
        "reg=dropout,seed=0",
        "reg=dropout,seed=1",
        "reg=none,seed=0",
        "reg=none,seed=1",
    ]
    from ablate.report import build_report

    out = build_report(sweep)
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    summary_md = (out / "summary.md").read_text()
    assert "Dropout shrinks the train-test gap" in summary_md
    # One verdict line per claim, from seeds paired across the two cells (both ran seeds 0 and 1).
    line = re.search(
        r"- \*\*(supported|contradicted|no effect|not tested|inconclusive)[^*]*\*\*: “Dropout shrinks the train-test gap[^\n]*",
        summary_md,
    )
    assert line is not None, summary_md
    assert "(2 seeds: " in line.group(0) or "; 2 seeds: " in line.group(0)  # paired by seed
    statuses = {json.loads(p.read_text())["status"] for p in sweep.rglob("summary.json")}
    assert statuses == {"completed"}


NEW_PRESETS = {  # the redesigned presets, shrunk: 2 seeds, a few steps, their levels cut where many
    "bn_mlp_quick": ["init=gaussian", "optim.momentum=0.0"],  # 2 of its 8 open setups
    "init_mlp_quick": ['hydra.sweeper.params.init="he_normal,lecun_normal"', "optim.lr=0.01"],
    "reg_overfit_quick": ["optim.lr=0.05", "optim.momentum=0.9"],  # its primary setup
    "gn_batch_quick": ["optim.momentum=0.9", "data.standardize=true"],  # its primary setup
    "norm_compare_quick": [
        'hydra.sweeper.params.norm="batch,group"',
        "optim.momentum=0.9",
        "data.standardize=true",
    ],
    "bn_noisy_quick": ["optim.momentum=0.0", "data.standardize=true"],  # its primary setup
    "landscape_quick": ["diagnostics.landscape.every_n_steps=1", "optim.lr=0.1"],
    # the lecture notes' claims (issue 27), at their primary setups
    "input_norm_quick": ["model.activation=tanh", "optim.lr=0.05"],
    "bn_init_quick": ["model.activation=relu", "optim.lr=0.05"],
    "bn_regularize_quick": ["optim.lr=0.05"],
    "bn_gradients_quick": [
        "init=xavier_normal",
        "optim.lr=0.1",
        "diagnostics.gradients.every_n_steps=1",
    ],
    "dropout_mc_quick": ["optim.lr=0.1", "model.width=512"],
    "dropout_noise_quick": ["optim.lr=0.1", "model.width=512"],
    "l1_l2_weights_quick": ["optim.lr=0.05"],
    # open-choice grids (issue 28), at their primary setups
    "aug_data_size_quick": ["reg=none", "optim.lr=0.05"],
}


@pytest.mark.parametrize("preset", sorted(NEW_PRESETS))
def test_a_shrunk_new_preset_runs_end_to_end_with_a_verdict_line_per_claim(
    preset, data_root, tmp_path
):
    sweep = tmp_path / "sweep"
    overrides = [o for o in fast_overrides(data_root, tmp_path) if "max_epochs" not in o]
    given = {o.split("=", 1)[0] for o in NEW_PRESETS[preset]}
    # the open grid at its primary setup (the panel's cells have their own test, test_panel.py)
    primary = [o for o in primary_setup(preset) if o.split("=", 1)[0] not in given]
    proc = run_cli(
        "-m", f"experiment={preset}", *overrides, "trainer.max_epochs=1", "trainer.max_steps=2",
        "data.train_subset=200", "data.eval_train_max=64", "++trainer.val_check_interval=null",
        "++trainer.check_val_every_n_epoch=1", "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1", 'hydra.sweeper.params.seed="0,1"',
        *NEW_PRESETS[preset], *primary, f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    statuses = [json.loads(p.read_text())["status"] for p in sweep.rglob("summary.json")]
    assert statuses and set(statuses) == {"completed"}
    from ablate.report import build_report

    md = (build_report(sweep) / "summary.md").read_text()
    claims = compose_preset(preset)["report"]["claims"]
    for claim in claims:
        line = re.search(
            r"- \*\*(supported|contradicted|no effect|not tested|inconclusive)[^*]*\*\*: “"
            + re.escape(claim["text"]),
            md,
        )
        assert line is not None, (claim["text"], md[:3000])

"""Every option of every model-building group composes with every option of every other group:
the config validates, the network builds, and one optimizer step runs on a batch of the data's shape.

Each pair of options runs in at least one config of one option per group (a pairwise covering
design, allpairspy's greedy all-pairs), ~120 configs instead of ~1,000 pairs each with the rest
at its default; a pair the design leaves out runs on its own."""

from __future__ import annotations

import itertools

import pytest
import torch
from allpairspy import AllPairs
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.construct import construction_problems
from ablate.data.augment import build_augment
from ablate.models import build_model
from ablate.module import Classifier
from ablate.validate import value_problems

GROUPS = ["data", "model", "norm", "reg", "init", "aug", "optim", "scheduler"]
OPTIONS = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in GROUPS}
# Refused with one line naming both options. InstanceNorm has no extent to normalize a feature
# vector over: an MLP refuses it (models/mlp.py), and so do the lecture nets with a `norm` after a
# dense layer (models/layers.py). GroupNorm's 8 groups cannot split the lecture CNN's 1-channel input.
REFUSED = {
    ("model=mlp", "norm=instance"),
    ("model=lecture_cnn", "norm=instance"),
    ("model=lecture_mlp_bn", "norm=instance"),
    ("model=lecture_cnn", "norm=group"),
}
PAIRS = [
    (f"{g1}={o1}", f"{g2}={o2}")
    for g1, g2 in itertools.combinations(GROUPS, 2)
    for o1 in OPTIONS[g1]
    for o2 in OPTIONS[g2]
]


def refused_pairs(options) -> list[tuple[str, str]]:
    """The pairs among the options that are refused (REFUSED, in either order)."""
    return [p for p in itertools.combinations(options, 2) if p in REFUSED or p[::-1] in REFUSED]


def covering_runs() -> list[tuple[str, ...]]:
    """Configs (one option per group) holding every pair of PAIRS that can build, then each pair
    they leave out on its own: the refused ones, and the few the greedy design misses."""
    levels = [[f"{g}={o}" for o in OPTIONS[g]] for g in GROUPS]
    runs = [tuple(r) for r in AllPairs(levels, filter_func=lambda row: not refused_pairs(row))]
    covered = {frozenset(p) for run in runs for p in itertools.combinations(run, 2)}
    return runs + [pair for pair in PAIRS if frozenset(pair) not in covered]


RUNS = covering_runs()


@pytest.fixture(scope="module")
def hydra_ctx():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def test_the_runs_hold_every_pair_of_options_and_each_refused_pair_alone():
    named = {o for pair in PAIRS for o in pair}
    assert set(PAIRS) >= REFUSED
    assert named == {f"{g}={o}" for g in GROUPS for o in OPTIONS[g]}
    assert len(PAIRS) > 300
    covered = {frozenset(p) for run in RUNS for p in itertools.combinations(run, 2)}
    assert covered >= {frozenset(p) for p in PAIRS}
    assert set(RUNS) >= REFUSED  # alone: the refusal names this pair, not another of its config
    assert all(len(run) == 2 for run in RUNS if refused_pairs(run))
    assert len(RUNS) < len(PAIRS) / 5


@pytest.mark.parametrize("run", RUNS, ids="+".join)
def test_options_compose_validate_and_step_together(run, hydra_ctx):
    overrides = [*run, "model.depth=3"] if "model=plain_deep" in run else list(run)
    if "data=image_folder" in run:
        overrides.append("data.root=/nonexistent")  # checked only when data is read
    cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert value_problems(cfg) == []
    channels, (h, w) = cfg.data.channels, cfg.data.image_size
    aug = build_augment(OmegaConf.to_container(cfg.aug, resolve=True), cfg.data.aug_family, seed=0)
    images = torch.randint(0, 256, (4, h, w, channels), dtype=torch.uint8).numpy()
    if aug is not None:
        assert aug(images).shape == images.shape
    if run in REFUSED:  # refused with one line before anything is built or written
        model, norm = run
        choices = dict(option.split("=") for option in run)
        (problem,) = construction_problems(cfg, choices, trainer=False)
        assert f"{model} cannot be built" in problem and norm in problem
        return
    torch.manual_seed(0)
    net = build_model(
        cfg.model,
        cfg.norm,
        cfg.reg,
        cfg.init,
        in_channels=channels,
        num_classes=cfg.data.num_classes,
        image_size=(h, w),
    )
    module = Classifier(
        net,
        optimizer=instantiate(cfg.optim),
        reg=instantiate(cfg.reg),
    )
    module.log = lambda *a, **k: None
    optimizer = module.configure_optimizers()
    scheduler = instantiate(cfg.scheduler) or None
    if scheduler is not None:
        scheduler = scheduler(optimizer=optimizer, total_steps=10)
    x = torch.randn(4, channels, h, w)
    loss = module.training_step((x, torch.arange(4) % cfg.data.num_classes), 0)
    assert torch.isfinite(loss)
    loss.backward()
    module.on_before_optimizer_step(optimizer)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def test_every_module_path_in_conf_and_the_readme_exists():
    """A reader follows `src/ablate/...py` from a conf file or the README to the module that exists."""
    import re

    repo = CONF_DIR.parent
    texts = {p: p.read_text() for p in [*CONF_DIR.rglob("*.yaml"), repo / "README.md"]}
    named = {(p.name, m) for p, t in texts.items() for m in re.findall(r"src/ablate/[\w/]+\.py", t)}
    assert len(named) > 20
    assert [
        f"{where}: {path}" for where, path in sorted(named) if not (repo / path).is_file()
    ] == []

"""Every option of every model-building group composes with every option of every other group:
the config validates, the network builds, and one optimizer step runs on a batch of the data's shape."""

from __future__ import annotations

import itertools

import pytest
import torch
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


@pytest.fixture(scope="module")
def hydra_ctx():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def test_pairs_cover_every_option():
    named = {o for pair in PAIRS for o in pair}
    assert set(PAIRS) >= REFUSED
    assert named == {f"{g}={o}" for g in GROUPS for o in OPTIONS[g]}
    assert len(PAIRS) > 300


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "+".join(p))
def test_option_pair_composes_validates_and_steps(pair, hydra_ctx):
    overrides = [*pair, "model.depth=3"] if "model=plain_deep" in pair else list(pair)
    if "data=image_folder" in pair:
        overrides.append("data.root=/nonexistent")  # checked only when data is read
    cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert value_problems(cfg) == []
    channels, (h, w) = cfg.data.channels, cfg.data.image_size
    aug = build_augment(OmegaConf.to_container(cfg.aug, resolve=True), cfg.data.aug_family, seed=0)
    images = torch.randint(0, 256, (4, h, w, channels), dtype=torch.uint8).numpy()
    if aug is not None:
        assert aug(images).shape == images.shape
    if pair in REFUSED:  # refused with one line before anything is built or written
        model, norm = pair
        choices = dict(option.split("=") for option in pair)
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

"""Speedrun presets and the techniques they add: label smoothing, test-time flip, two convs per block."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from conftest import fast_overrides, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from torch import nn

from ablate.config import CONF_DIR
from ablate.models.cnn import CNN
from ablate.module import Classifier
from ablate.techniques.norm import batch
from ablate.techniques.reg import Reg
from ablate.validate import value_problems

SPEEDRUNS = ["speedrun_mnist", "speedrun_cifar10"]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


def _module(**kwargs) -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    return Classifier(net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3, **kwargs)


def test_label_smoothing_changes_the_training_loss_only():
    x, y = torch.randn(8, 2, 4, 4), torch.randint(0, 3, (8,))
    smooth, plain = _module(reg=Reg(label_smoothing=0.2)), _module()
    loss, data_loss, _, logits = smooth.objective(x, y)
    # (1 - e) * CE(onehot) + e * mean over classes of -log p  (Szegedy et al. 2016, Sec. 7)
    logp = F.log_softmax(logits, dim=1)
    expected = 0.8 * F.nll_loss(logp, y) + 0.2 * (-logp.mean(dim=1)).mean()
    torch.testing.assert_close(data_loss, expected)
    assert not torch.allclose(data_loss, plain.objective(x, y)[1])
    # validation reports plain cross-entropy: same number with and without smoothing
    for m in (smooth, plain):
        m.validation_step((x, y), 0)
    torch.testing.assert_close(smooth.val_loss.compute(), plain.val_loss.compute())


def test_tta_flip_averages_the_image_and_its_mirror_at_eval():
    x = torch.randn(5, 2, 4, 4)
    tta, plain = _module(tta_flip=True), _module()
    expected = (tta(x) + tta(x.flip(-1))) / 2
    torch.testing.assert_close(tta.predict_logits(x), expected)
    torch.testing.assert_close(plain.predict_logits(x), plain(x))
    assert not torch.allclose(tta.predict_logits(x), plain.predict_logits(x))
    # a mirror-symmetric batch predicts as without TTA
    sym = torch.cat([x[..., :2], x[..., :2].flip(-1)], dim=-1)
    torch.testing.assert_close(tta.predict_logits(sym), plain(sym))


def test_convs_per_block_stacks_same_width_convs_before_the_pool():
    net = CNN(3, 10, (32, 32), channels=[8, 16], hidden=0, norm=batch(), convs=2)
    convs = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 8), (8, 8), (8, 16), (16, 16)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 4
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 2
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["reg.label_smoothing=1.0"], "reg.label_smoothing=1.0 is not allowed: a number in [0, 1)"),
        (["model.convs=0"], "model.convs=0 is not allowed: a positive integer"),
        (["model.tta_flip=true"], "model.tta_flip=true with digits"),
        (["model.tta_flip=yes"], "model.tta_flip='yes' is not allowed"),
    ],
)
def test_bad_values_are_named(overrides, expected):
    problems = value_problems(_compose(*overrides))
    assert any(expected in p for p in problems), problems


def test_tta_flip_is_fine_on_natural_images():
    assert value_problems(_compose("data=cifar10", "model.tta_flip=true")) == []


@pytest.mark.parametrize("name", SPEEDRUNS)
def test_speedrun_presets_are_single_runs_with_a_target(name):
    cfg = _compose(f"experiment={name}")
    assert value_problems(cfg) == []
    assert not cfg.hydra.sweeper.get("params"), "a speedrun is one run, timed over seeds"
    assert cfg.report.target.metric == "test/acc"
    assert 0.9 < cfg.report.target.value < 1
    assert cfg.data.on_device is not False and cfg.data.eval_train_max == 0


def test_speedrun_cifar10_uses_the_recipe_it_names():
    cfg = _compose("experiment=speedrun_cifar10")
    assert cfg.data.dataset == "cifar10" and cfg.reg.label_smoothing > 0
    assert cfg.model.tta_flip and cfg.model.channels_last and cfg.model.convs == 2
    assert cfg.trainer.precision == "bf16-mixed"


@pytest.mark.parametrize("name", SPEEDRUNS)
def test_speedrun_trains_end_to_end_on_cpu(name, data_root, tmp_path):
    """Each preset runs through the CLI (toy data, a few steps); bf16 + channels_last on CPU too."""
    overrides = [*fast_overrides(data_root, tmp_path), "trainer.max_steps=3"]
    if name == "speedrun_cifar10":
        overrides += ["model.channels=[8,16,16]"]
    proc = run_cli(f"experiment={name}", *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = [json.loads(p.read_text()) for p in tmp_path.rglob("summary.json")]
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert 0 <= summary["metrics"]["test/acc"] <= 1
    assert summary["config"]["reg"]["label_smoothing"] > 0

import math
from functools import partial

import pytest
import torch
from torch import nn

from ablate.models.cnn import CNN
from ablate.techniques import init


def _std(fn, shape, activation="relu", **kw):
    w = torch.empty(*shape)
    torch.manual_seed(0)
    fn(w, activation, **kw)
    return w.std().item(), w


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_he_std_matches_gain_over_sqrt_fan_in(distribution):
    # conv 64 -> 128, 3x3: fan_in = 64 * 9
    std, _ = _std(init.he, (128, 64, 3, 3), distribution=distribution)
    assert std == pytest.approx(math.sqrt(2.0 / (64 * 9)), rel=0.03)
    std_tanh, _ = _std(init.he, (128, 64, 3, 3), activation="tanh", distribution=distribution)
    assert std_tanh == pytest.approx((5 / 3) / math.sqrt(64 * 9), rel=0.03)


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_xavier_std_matches_glorot(distribution):
    std, w = _std(init.xavier, (300, 200), distribution=distribution)
    assert std == pytest.approx(math.sqrt(2.0 / (200 + 300)), rel=0.03)
    if distribution == "uniform":
        assert w.abs().max().item() <= math.sqrt(6.0 / 500) + 1e-6
    std_auto, _ = _std(init.xavier, (300, 200), distribution=distribution, gain="auto")
    assert std_auto == pytest.approx(math.sqrt(2.0) * math.sqrt(2.0 / 500), rel=0.03)


def test_lecun_std():
    std, _ = _std(init.lecun, (256, 400))
    assert std == pytest.approx(1 / math.sqrt(400), rel=0.03)


@pytest.mark.parametrize("shape", [(100, 784), (10, 100), (64, 3, 3, 3)])
@pytest.mark.parametrize("std", [0.01, 0.1])
def test_gaussian_std_is_fixed_whatever_the_fan(shape, std):
    got, w = _std(init.gaussian, shape, activation="sigmoid", std=std)
    assert got == pytest.approx(std, rel=0.1)
    assert abs(w.mean().item()) < 4 * std / math.sqrt(w.numel())


def test_orthogonal_rows_are_orthonormal_times_gain():
    _, w = _std(init.orthogonal, (32, 16, 3, 3))
    flat = w.view(32, -1)
    assert torch.allclose(flat @ flat.T, 2.0 * torch.eye(32), atol=1e-4)  # gain^2 = 2 for ReLU


def test_constant_init_gives_identical_filters_and_units():
    model = CNN(1, 10, (28, 28), channels=[4, 8], hidden=16)
    init.apply_init(model, partial(init.constant, value=0.01), "relu")
    conv = model.features[0][0].weight
    assert torch.equal(conv, torch.full_like(conv, 0.01))
    out = model.features(torch.randn(2, 1, 28, 28))
    # Every channel of a layer computes the same map: the symmetry is never broken.
    assert torch.allclose(out, out[:, :1].expand_as(out))


def test_apply_init_zeroes_biases_and_uses_linear_gain_for_the_last_layer():
    model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 1000))
    torch.manual_seed(0)
    touched = init.apply_init(model, partial(init.he, distribution="normal"), "relu")
    assert touched == ["0", "2"]
    assert model[0].weight.std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    assert model[2].weight.std().item() == pytest.approx(math.sqrt(1 / 1000), rel=0.02)
    assert model[0].bias.abs().sum().item() == 0


def test_default_init_leaves_pytorch_weights():
    torch.manual_seed(0)
    model = nn.Linear(10, 10)
    before = model.weight.clone()
    assert init.apply_init(model, partial(init.default), "relu") == []
    assert torch.equal(model.weight, before)


def test_unknown_activation_gain_is_an_error():
    with pytest.raises(ValueError, match="known"):
        init.gain_for("swish2")


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_he_and_auto_xavier_gains_match_torch_calculate_gain(activation):
    """The MLP's sigmoid and tanh units get torch's own gains (1 and 5/3) under He and Xavier(auto)."""
    gain = nn.init.calculate_gain(activation)
    std, _ = _std(init.he, (400, 300), activation=activation)
    assert std == pytest.approx(gain / math.sqrt(300), rel=0.03)
    std, _ = _std(init.xavier, (400, 300), activation=activation, gain="auto")
    assert std == pytest.approx(gain * math.sqrt(2.0 / 700), rel=0.03)

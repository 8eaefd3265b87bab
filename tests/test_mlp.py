"""model=mlp: the layer order, what each norm normalizes over a feature vector, widths and depth,
input dropout, and the deep-net behaviour the init presets test (He keeps the signal, constant
init never breaks symmetry)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ablate.models.mlp import MLP, hidden_widths
from ablate.techniques.init import apply_init, constant, he
from ablate.techniques.norm import AsVectors, batch, group, instance, layer, none


def _kinds(net: MLP) -> list[str]:
    return [type(m).__name__ for m in net.net]


def test_layers_are_linear_norm_activation_dropout_then_the_classifier():
    net = MLP(1, 10, (28, 28), depth=2, width=16, activation="sigmoid", norm=batch(), dropout=0.5)
    assert _kinds(net) == [
        "Flatten",
        *["Linear", "AsVectors", "Sigmoid", "Dropout"] * 2,
        "Linear",
    ]
    linears = [m for m in net.net if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(16, 784), (16, 16), (10, 16)]
    assert [m.bias is None for m in linears] == [True, True, False]  # BN's beta replaces the bias
    after = MLP(
        3, 5, (4, 4), depth=1, width=8, norm=batch(placement="after_act"), input_dropout=0.2
    )
    assert _kinds(after) == ["Flatten", "Dropout", "Linear", "ReLU", "AsVectors", "Linear"]
    assert after.net[2].bias is not None and after.net[1].p == 0.2
    assert after(torch.randn(2, 3, 4, 4)).shape == (2, 5)


def test_each_norm_normalizes_a_feature_vector_over_what_its_paper_says():
    x = torch.randn(64, 12) * 5 + 3
    per_feature = AsVectors(batch()(12)).train()(x)  # over the batch, per feature
    assert (
        per_feature.mean(0).abs().max() < 1e-5
        and (per_feature.std(0, unbiased=False) - 1).abs().max() < 1e-3
    )
    per_sample = layer().for_vectors(12)(x)  # over the features, per sample
    assert per_sample.mean(1).abs().max() < 1e-5
    groups = group(groups=3).for_vectors(12)(x).view(64, 3, 4)  # per sample and group of 4
    assert groups.mean(2).abs().max() < 1e-5
    assert isinstance(none().for_vectors(12), nn.Identity)


def test_instance_norm_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="norm=instance cannot normalize a feature vector"):
        MLP(1, 10, (28, 28), norm=instance())


@given(depth=st.integers(0, 6), width=st.integers(1, 64))
@settings(max_examples=25, deadline=None)
def test_depth_times_width_or_a_list_of_widths(depth, width):
    assert hidden_widths(depth, width) == [width] * depth
    widths = [width + i for i in range(depth)]
    assert hidden_widths(None, widths) == widths == hidden_widths(depth, widths)
    net = MLP(1, 3, (2, 2), depth=None, width=widths)
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == depth + 1


def test_a_list_of_widths_that_disagrees_with_depth_names_the_fix():
    with pytest.raises(ValueError, match=r"model.depth=3 disagrees .* set model.depth=2"):
        hidden_widths(3, [64, 32])


def _activations(net: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for m in net.net:
        x = m(x)
        if isinstance(m, nn.ReLU):
            out.append(x)
    return out


def test_he_init_keeps_a_deep_relu_mlp_signal_where_constant_init_collapses_it():
    torch.manual_seed(0)
    x = torch.randn(256, 1, 16, 16)
    deep = MLP(1, 10, (16, 16), depth=20, width=128)
    apply_init(deep, he, "relu")
    spread = [a.std().item() for a in _activations(deep, x)]
    assert 0.3 < spread[-1] / spread[0] < 3  # He et al. 2015 eq. 10: variance kept across layers
    tied = MLP(1, 10, (16, 16), depth=3, width=32)
    apply_init(tied, constant, "relu")
    hidden = _activations(tied, x)[-1]
    assert torch.allclose(hidden, hidden[:, :1].expand_as(hidden))  # every unit the same: symmetric

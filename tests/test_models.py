import pytest
import torch
from torch import nn

from ablate.models.cnn import CNN
from ablate.models.plain_deep import PlainDeep
from ablate.techniques.norm import batch, group, none


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 45, 60)])
def test_cnn_output_shape(shape):
    model = CNN(shape[0], 7, shape[1:], channels=[8, 16, 16], hidden=32, norm=group(groups=4))
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_cnn_too_many_pooled_blocks_is_a_clear_error():
    with pytest.raises(ValueError, match="model.channels"):
        CNN(1, 10, (4, 4), channels=[4, 4, 4, 4])


@pytest.mark.parametrize("depth", [5, 30])
def test_plain_deep_has_depth_identical_convs_and_no_shortcuts(depth):
    model = PlainDeep(1, 10, (28, 28), depth=depth, width=8, norm=none())
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == depth
    assert all(c.weight.shape == (8, 8, 3, 3) for c in convs[1:])
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_norm_layers_appear_in_every_block():
    model = PlainDeep(3, 10, (32, 32), depth=6, width=8, norm=batch())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6


def test_head_norm_normalizes_the_hidden_layer_per_feature():
    from ablate.techniques.norm import instance

    x = torch.randn(16, 1, 28, 28)
    net = CNN(1, 10, (28, 28), channels=[4], hidden=8, norm=batch(), head_norm=True).train()
    hidden = net.head[:3](net.features(x))  # flatten -> linear (no bias) -> BN
    assert net.head[1].bias is None
    assert torch.allclose(hidden.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(hidden.var(0, unbiased=False), torch.ones(8), atol=1e-3)
    after = CNN(1, 10, (28, 28), channels=[4], hidden=8, norm=batch("after_act"), head_norm=True)
    assert isinstance(after.head[2], nn.ReLU)  # linear -> ReLU -> BN
    plain = CNN(1, 10, (28, 28), channels=[4], hidden=8, norm=none(), head_norm=True)
    assert [type(m) for m in plain.head] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    assert CNN(1, 10, (28, 28), channels=[4], hidden=8, norm=group(4), head_norm=True)(x).shape == (
        16,
        10,
    )
    with pytest.raises(ValueError, match="norm=instance cannot normalize a feature vector"):
        CNN(1, 10, (28, 28), channels=[4], hidden=8, norm=instance(), head_norm=True)

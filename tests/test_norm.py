import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate.models.blocks import conv_block
from ablate.techniques import norm


def test_batchnorm_normalizes_per_channel_in_training():
    bn = norm.batch()(4).train()
    x = torch.randn(64, 4, 5, 5) * torch.tensor([1.0, 3.0, 0.5, 10.0]).view(1, 4, 1, 1) + 7
    y = bn(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-3)


def test_batchnorm_uses_running_statistics_in_eval():
    bn = norm.batch(momentum=0.1)(3)
    bn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    bn.eval()
    x = torch.randn(2, 3, 4, 4)
    expected = (x - bn.running_mean.view(1, 3, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, 3, 1, 1) + bn.eps
    )
    assert torch.allclose(bn(x), expected, atol=1e-6)
    # A batch in train mode moves the running mean towards the batch mean by `momentum`.
    bn.train()
    before = bn.running_mean.clone()
    bn(x)
    assert torch.allclose(bn.running_mean, 0.9 * before + 0.1 * x.mean(dim=(0, 2, 3)), atol=1e-6)


@pytest.mark.parametrize("factory", [norm.layer(), norm.group(groups=1)])
def test_one_group_equals_layernorm_over_chw(factory):
    layer = factory(6)
    x = torch.randn(5, 6, 7, 7) * 3 + 1
    assert torch.allclose(layer(x), F.layer_norm(x, (6, 7, 7)), atol=1e-5)


def test_groupnorm_statistics_per_group_and_sample():
    gn = norm.group(groups=2)(4)
    x = torch.randn(3, 4, 5, 5) * 4 + 2
    y = gn(x).view(3, 2, -1)
    assert torch.allclose(y.mean(-1), torch.zeros(3, 2), atol=1e-5)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones(3, 2), atol=1e-3)


def test_instancenorm_per_sample_and_channel():
    y = norm.instance()(3)(torch.randn(2, 3, 6, 6) * 5 - 1)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5)


def test_placement_orders_norm_and_activation():
    before = [
        type(m) for m in conv_block(1, 4, norm.batch(placement="before_act"), "relu", False, 0.0)
    ]
    after = [
        type(m) for m in conv_block(1, 4, norm.batch(placement="after_act"), "relu", False, 0.0)
    ]
    assert before == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert after == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    # The norm's shift makes a conv bias redundant only when it directly follows the conv.
    assert conv_block(1, 4, norm.batch(placement="before_act"), "relu", False, 0.0)[0].bias is None
    assert (
        conv_block(1, 4, norm.batch(placement="after_act"), "relu", False, 0.0)[0].bias is not None
    )


def test_bad_placement_is_rejected():
    with pytest.raises(ValueError, match="before_act"):
        norm.batch(placement="middle")

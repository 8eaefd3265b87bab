import pytest
import torch
from torch import nn

from ablate.models.cnn import CNN
from ablate.module import Classifier
from ablate.techniques.norm import batch
from ablate.techniques.reg import Reg, penalty, split_decay


def _known_model():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(18, dtype=torch.float32).view(2, 1, 3, 3) - 9)
        model[0].bias.fill_(100.0)
        model[1].weight.fill_(50.0)
        model[3].weight.fill_(-0.5)
        model[3].bias.fill_(100.0)
    return model


def test_split_decay_takes_conv_and_linear_weights_only():
    weights, others, names = split_decay(_known_model())
    assert names == ["0.weight", "3.weight"]
    assert len(others) == 4  # conv bias, BN gamma and beta, linear bias


def test_penalties_match_the_formulas():
    weights, _, _ = split_decay(_known_model())
    w0 = torch.arange(18, dtype=torch.float32) - 9
    l1_expected = w0.abs().sum() + 24 * 0.5
    l2_expected = (w0**2).sum() + 24 * 0.25
    assert penalty(weights, l1=0.01).item() == pytest.approx(0.01 * l1_expected.item())
    assert penalty(weights, l2=0.001).item() == pytest.approx(0.001 * l2_expected.item())
    assert penalty(weights, l1=0.01, l2=0.001).item() == pytest.approx(
        0.01 * l1_expected.item() + 0.001 * l2_expected.item()
    )
    assert penalty(weights).item() == 0.0


def test_dropout_is_inverted_and_identity_in_eval():
    model = CNN(1, 10, (8, 8), channels=[4], hidden=2000, dropout=0.3)
    drop = [m for m in model.head if isinstance(m, nn.Dropout)][0]
    torch.manual_seed(0)
    x = torch.ones(50, 2000)
    y = drop.train()(x)
    zeroed = (y == 0).float().mean().item()
    assert zeroed == pytest.approx(0.3, abs=0.01)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert torch.equal(drop.eval()(x), x)


def test_dropout2d_zeroes_whole_channels():
    model = CNN(1, 10, (8, 8), channels=[64], hidden=0, dropout2d=0.5, pool=False)
    torch.manual_seed(0)
    feats = model.features.train()(torch.randn(8, 1, 8, 8))
    per_channel = feats.abs().sum(dim=(2, 3))
    zero_channels = (per_channel == 0).float().mean().item()
    assert 0.35 < zero_channels < 0.65
    assert isinstance(model.features[0][-1], nn.Dropout2d)


def test_training_loss_is_data_loss_plus_penalty():
    torch.manual_seed(0)
    net = CNN(1, 10, (8, 8), channels=[4], hidden=8, norm=batch())
    module = Classifier(net, optimizer=torch.optim.SGD, reg=Reg(l1=1e-3, l2=1e-2))
    module.log = lambda *a, **k: None
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    loss = module.training_step((x, y), 0)
    data_loss = nn.functional.cross_entropy(net(x), y)
    weights = [p for p in net.parameters() if p.dim() >= 2]
    expected = (
        data_loss
        + 1e-3 * sum(w.abs().sum() for w in weights)
        + 1e-2 * sum((w**2).sum() for w in weights)
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_decoupled_weight_decay_shrinks_weights_not_biases_or_norms():
    net = CNN(1, 10, (8, 8), channels=[4], hidden=8, norm=batch())
    module = Classifier(
        net, optimizer=lambda params: torch.optim.SGD(params, lr=0.1), reg=Reg(weight_decay=0.5)
    )
    opt = module.configure_optimizers()
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    module.on_before_optimizer_step(opt)
    opt.step()
    for name, p in net.named_parameters():
        factor = 1 - 0.1 * 0.5 if p.dim() >= 2 else 1.0
        assert torch.allclose(p, before[name] * factor), name

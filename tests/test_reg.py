import pytest
import torch
from torch import nn

from ablate.models.cnn import CNN
from ablate.models.mlp import MLP
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


def test_max_norm_projects_each_units_incoming_weights_and_leaves_short_ones_bitwise():
    linear = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])  # row norms 5, 0.5, 0
    conv = torch.zeros(2, 1, 2, 2)
    conv[0] += 2.0  # output channel 0: norm 4 over its flattened 1x2x2 kernel
    conv[1, 0, 0, 0] = 0.1
    short = conv[1].clone()
    Reg(max_norm=2.0).constrain_([linear, conv])
    assert torch.allclose(linear[0], torch.tensor([1.2, 1.6]))  # rescaled onto the ball: norm 2
    assert torch.equal(linear[1], torch.tensor([0.3, 0.4])) and torch.equal(
        linear[2], torch.zeros(2)
    )
    assert torch.linalg.vector_norm(conv[0]).item() == pytest.approx(2.0)
    assert torch.equal(conv[1], short)
    before = linear.clone()
    Reg().constrain_([linear])  # max_norm null: off
    assert torch.equal(linear, before)


def test_max_norm_holds_after_every_training_step_for_weights_not_biases():
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    net = MLP(1, 4, (4, 4), depth=2, width=8)
    module = Classifier(
        net,
        optimizer=lambda params: torch.optim.SGD(params, lr=5.0),
        reg=Reg(max_norm=0.5, dropout=0.5),
    )
    norms: list[float] = []

    class Watch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            norms.extend(
                torch.linalg.vector_norm(w.flatten(1), dim=1).max().item()
                for w in pl_module.decay_weights
            )

    data = TensorDataset(torch.randn(64, 1, 4, 4), torch.arange(64) % 4)
    trainer = L.Trainer(
        max_steps=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[Watch()], accelerator="cpu", limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=16))
    assert len(norms) == 6 * 3 and max(norms) <= 0.5 + 1e-6
    assert max(b.abs().max().item() for n, b in net.named_parameters() if n.endswith("bias")) > 0

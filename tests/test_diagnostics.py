"""Diagnostics: each statistic against a hand computation, the probe leaves training untouched."""

from __future__ import annotations

import copy
import glob
import json
import re
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fast_overrides, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ablate.diagnostics.activations import ActivationStats, dead_fraction, tensor_stats
from ablate.diagnostics.gradients import GradientHealth
from ablate.diagnostics.landscape import LandscapeProbe, probe
from ablate.module import Classifier
from ablate.techniques.norm import NoisyShift, batch_noisy
from ablate.techniques.reg import Reg


class Capture(Logger):
    """A logger that keeps every log_metrics call: {step: {key: value}}."""

    def __init__(self) -> None:
        super().__init__()
        self.logged: dict[int, dict[str, float]] = {}

    @property
    def name(self) -> str:
        return "capture"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.logged.setdefault(step, {}).update(metrics)


def tiny_net(dropout: float = 0.0, norm: str = "batch") -> nn.Module:
    layers = [nn.Conv2d(1, 4, 3, padding=1)]
    layers.append(nn.BatchNorm2d(4) if norm == "batch" else batch_noisy()(4))
    layers += [nn.ReLU(), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * 6 * 6, 3)]
    return nn.Sequential(*layers)


def tiny_loader(n: int = 32, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 1, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)


def fit(
    net: nn.Module, callbacks: list, steps: int = 6, lr: float = 0.1
) -> tuple[Classifier, Capture]:
    """Train a Classifier for a few deterministic CPU steps; returns the module and what was logged."""
    torch.manual_seed(0)
    module = Classifier(
        net, optimizer=partial(torch.optim.SGD, lr=lr), num_classes=3, reg=Reg(l2=1e-3)
    )
    capture = Capture()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=capture, callbacks=callbacks,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=True, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=tiny_loader())
    return module, capture


# ----------------------------------------------------------------- statistics
def test_tensor_stats_match_numpy():
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    stats = tensor_stats(x)
    ref = x.numpy().ravel()
    assert stats["mean"] == pytest.approx(ref.mean(), abs=1e-6)
    assert stats["std"] == pytest.approx(ref.std(), abs=1e-6)
    for p in (15, 50, 85):
        assert stats[f"p{p}"] == pytest.approx(np.percentile(ref, p), abs=1e-5)


def test_dead_fraction_counts_units_zero_for_the_whole_batch():
    out = torch.zeros(2, 4, 3, 3)
    out[1, 1, 2, 2] = 0.5  # channel 1 fires once: alive
    out[0, 3] = 1.0  # channel 3 fires everywhere in sample 0: alive
    assert dead_fraction(out) == pytest.approx(0.5)  # channels 0 and 2 dead
    assert dead_fraction(torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])) == pytest.approx(2 / 3)


def test_activation_stats_and_gradients_at_step_zero_match_hand_computation():
    net = tiny_net()
    torch.manual_seed(0)
    ref = copy.deepcopy(net)  # the weights before any step
    module, capture = fit(net, [ActivationStats(every_n_steps=4), GradientHealth(every_n_steps=4)])
    x, y = next(iter(tiny_loader()))
    conv_out = ref[0](x)
    assert conv_out.mean().item() == pytest.approx(
        capture.logged[0]["activations/net.0/mean"], rel=1e-5
    )
    assert np.percentile(conv_out.detach().numpy(), 85) == pytest.approx(
        capture.logged[0]["activations/net.0/p85"], rel=1e-4
    )
    post_relu = F.relu(ref[1](conv_out))
    assert capture.logged[0]["dead_relu/net.2"] == pytest.approx(dead_fraction(post_relu))
    # gradient of cross-entropy + l2 * sum w^2 (weights only) at the initial weights
    ref.train()
    loss = F.cross_entropy(ref(x), y) + 1e-3 * (
        ref[0].weight.pow(2).sum() + ref[5].weight.pow(2).sum()
    )
    loss.backward()
    g = ref[0].weight.grad
    assert capture.logged[0]["grads/net.0.weight/norm"] == pytest.approx(g.norm().item(), rel=1e-4)
    assert capture.logged[0]["weights/net.0.weight/norm"] == pytest.approx(
        ref[0].weight.norm().item(), rel=1e-6
    )
    # plain SGD: the update is lr * g, so the ratio is 0.1 * ||g|| / ||w||
    expected = 0.1 * g.norm().item() / ref[0].weight.norm().item()
    assert capture.logged[0]["update_ratio/net.0.weight"] == pytest.approx(expected, rel=1e-4)
    assert 4 in capture.logged and 1 not in capture.logged  # every 4 steps, nothing in between


# ----------------------------------------------------------------- landscape probe
def test_probe_matches_hand_computed_landscape_and_restores_everything():
    torch.manual_seed(3)
    net = tiny_net(dropout=0.3).train()
    x, y = next(iter(tiny_loader()))
    before = copy.deepcopy(net.state_dict())
    rng = torch.get_rng_state()
    out = probe(net, x, y, lr=0.1, factors=[0.5, 2.0])
    for k, v in net.state_dict().items():  # parameters and BN running statistics unchanged
        assert torch.equal(v, before[k]), k
    assert torch.equal(torch.get_rng_state(), rng)

    def loss_grad(model):
        torch.set_rng_state(rng)  # the probe evaluates every point with the same dropout masks
        loss = F.cross_entropy(model(x), y)
        return loss.item(), torch.autograd.grad(loss, list(model.parameters()))

    _, g = loss_grad(copy.deepcopy(net))
    g_norm = torch.sqrt(sum((t**2).sum() for t in g)).item()
    losses, diffs = [], []
    for factor in (0.5, 2.0):
        moved = copy.deepcopy(net)
        with torch.no_grad():
            for p, gi in zip(moved.parameters(), g, strict=True):
                p -= factor * 0.1 * gi
        loss, g2 = loss_grad(moved)
        losses.append(loss)
        diffs.append(
            torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(g, g2, strict=True))).item()
        )
    assert out["loss_min"] == pytest.approx(min(losses), rel=1e-5)
    assert out["loss_max"] == pytest.approx(max(losses), rel=1e-5)
    assert out["grad_diff_max"] == pytest.approx(max(diffs), rel=1e-4)
    beta = max(d / (f * 0.1 * g_norm) for d, f in zip(diffs, (0.5, 2.0), strict=True))
    assert out["beta_smoothness"] == pytest.approx(beta, rel=1e-4)
    torch.set_rng_state(rng)


@pytest.mark.parametrize("norm", ["batch", "batch_noisy"])
def test_diagnostics_leave_the_training_trajectory_unchanged(norm):
    torch.manual_seed(0)
    net = tiny_net(dropout=0.2, norm=norm)
    plain, _ = fit(copy.deepcopy(net), [])
    probe_cb = LandscapeProbe(every_n_steps=2, points=3)
    probed, capture = fit(
        copy.deepcopy(net), [ActivationStats(every_n_steps=1, histogram_every_n_steps=2),
                             GradientHealth(every_n_steps=1), probe_cb],
    )  # fmt: skip
    assert len(probe_cb.records) == 3 and "landscape/loss_max" in capture.logged[2]
    for (k, a), b in zip(plain.state_dict().items(), probed.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{k} differs with diagnostics on"


def test_probe_summary_is_the_mean_over_probes():
    cb = LandscapeProbe()
    cb.records = [
        {"step": 0, "lr": 0.1, "loss_range": 1.0},
        {"step": 5, "lr": 0.1, "loss_range": 3.0},
    ]
    found = cb.summary()
    assert found["metrics"] == {"landscape/loss_range_mean": 2.0}
    assert [r["step"] for r in found["series"]["landscape"]] == [0, 5]


def test_probe_rejects_a_bad_grid():
    with pytest.raises(ValueError, match="min_factor"):
        LandscapeProbe(min_factor=2.0, max_factor=1.0)


# ----------------------------------------------------------------- noisy BN
def test_noisy_shift_draws_scale_and_shift_in_range_per_step_and_is_identity_at_eval():
    layer = NoisyShift(shift=0.5, scale=(2.0, 3.0))
    zeros, ones = torch.zeros(16, 3, 4, 4), torch.ones(16, 3, 4, 4)
    torch.manual_seed(0)
    m = layer(zeros)
    assert m.abs().max() <= 0.5 and m.std() > 0
    assert torch.equal(m[:, :, 0, 0], m[:, :, 3, 3])  # one (s, m) per sample and channel
    assert not torch.equal(m[0], m[1])  # per sample
    torch.manual_seed(0)
    s = layer(ones) - m  # same draws: s * 1 + m - m
    assert s.min() >= 2.0 - 1e-6 and s.max() <= 3.0 + 1e-6
    assert not torch.equal(layer(zeros), layer(zeros))  # redrawn at every step
    layer.eval()
    assert torch.equal(layer(ones), ones)


def test_noisy_shift_shared_over_the_batch_when_not_per_sample():
    out = NoisyShift(per_sample=False)(torch.zeros(8, 2, 3, 3))
    assert torch.equal(out[0], out[7])


@settings(max_examples=25, deadline=None)
@given(
    mu_range=st.floats(0.0, 1.0),
    low=st.floats(0.5, 1.5),
    width=st.floats(0.0, 0.5),
    r_m=st.floats(0.01, 0.3),
    r_s=st.floats(0.01, 0.3),
    seed=st.integers(0, 2**16),
)
def test_algorithm_1_jitters_each_element_around_its_channels_step_draw(
    mu_range, low, width, r_m, r_s, seed
):
    """Santurkar et al.'s Algorithm 1: per channel and step (mu, sigma); per element (sample and
    position) m ~ U(mu +- r_m) and s ~ N(sigma, r_s)."""
    layer = NoisyShift(
        shift=mu_range, scale=(low, low + width), per_sample=False, jitter=(r_m, r_s)
    )
    zeros, ones = torch.zeros(64, 3, 8, 8), torch.ones(64, 3, 8, 8)
    torch.manual_seed(seed)
    m = layer(zeros)
    torch.manual_seed(seed)
    s = layer(ones) - m  # the same draws
    per_channel_m = m.transpose(0, 1).reshape(3, -1)
    per_channel_s = s.transpose(0, 1).reshape(3, -1)
    spread = per_channel_m.max(1).values - per_channel_m.min(1).values
    assert (spread <= 2 * r_m + 1e-5).all() and (spread > r_m).all()  # 4,096 draws fill the range
    centre = (per_channel_m.max(1).values + per_channel_m.min(1).values) / 2
    assert (centre.abs() <= mu_range + 1e-2 * r_m + 1e-5).all()  # mu in [-n_mu, n_mu]
    sigma = per_channel_s.mean(1)
    assert ((sigma >= low - 0.02) & (sigma <= low + width + 0.02)).all()
    assert torch.allclose(per_channel_s.std(1), torch.full((3,), r_s), rtol=0.1)
    assert not torch.equal(m[0, :, 0, 0], m[0, :, 1, 1])  # per position, not per channel only
    layer.eval()
    assert torch.equal(layer(ones), ones)


def test_batch_noisy_checks_its_ranges():
    with pytest.raises(ValueError, match="scale"):
        batch_noisy(scale=(2.0, 1.0))
    layer = batch_noisy()(4)
    assert isinstance(layer[0], nn.BatchNorm2d) and isinstance(layer[1], NoisyShift)


# ----------------------------------------------------------------- end to end
def test_diagnostics_full_trains_end_to_end(data_root, tmp_path):
    r = run_cli(
        *fast_overrides(data_root, tmp_path), "diagnostics=full", "norm=batch_noisy",
        "diagnostics.landscape.every_n_steps=5", "diagnostics.activations.every_n_steps=5",
        "diagnostics.activations.histogram_every_n_steps=10",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = glob.glob(str(tmp_path / "logs" / "runs" / "*" / "summary.json"))
    summary = json.loads(Path(path).read_text())
    assert summary["status"] == "completed"
    probes = summary["diagnostics"]["landscape"]
    assert [p["step"] for p in probes] == list(range(0, summary["steps"], 5))
    assert (
        summary["metrics"]["landscape/loss_max_mean"]
        >= summary["metrics"]["landscape/loss_min_mean"]
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event_dir,) = {p.rsplit("/", 1)[0] for p in glob.glob(str(tmp_path / "logs/runs/*/events.*"))}
    events = EventAccumulator(event_dir, size_guidance={"histograms": 0}).Reload()
    tags = events.Tags()
    assert any(t.startswith("activations/net.") and t.endswith("/p85") for t in tags["scalars"])
    assert any(t.startswith("grads/") for t in tags["histograms"])
    assert "landscape/beta_smoothness" in tags["scalars"]


def test_bad_diagnostics_interval_fails_before_training(data_root, tmp_path):
    r = run_cli(
        *fast_overrides(data_root, tmp_path),
        "diagnostics=basic",
        "diagnostics.gradients.every_n_steps=-1",
    )
    assert r.returncode == 2
    assert "diagnostics.gradients.every_n_steps=-1" in r.stderr
    assert not (tmp_path / "logs" / "runs").exists() or not glob.glob(
        str(tmp_path / "logs/runs/*/checkpoints")
    )


def test_landscape_sweep_report_draws_both_configs_and_judges_the_claims(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = [o for o in fast_overrides(data_root, tmp_path) if "max_epochs" not in o]
    r = run_cli(
        "-m", "experiment=landscape_quick", *overrides, "trainer.max_epochs=1",
        "data.train_subset=300", "diagnostics.landscape.every_n_steps=3",
        "optim.momentum=0.0", "data.standardize=true",  # the primary of its open grid
        'hydra.sweeper.params.seed="0,1"', f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    from ablate.report import build_report, load_sweep

    runs = load_sweep(sweep).runs
    assert sorted(run.factors["norm"] for run in runs) == ["batch", "batch", "none", "none"]
    for run in runs:  # a probe every 3 steps
        assert [p["step"] for p in run.diagnostics["landscape"]] == list(
            range(0, int(run.steps), 3)
        )
    out = build_report(sweep)
    assert (out / "landscape.png").stat().st_size > 10_000
    summary_md = (out / "summary.md").read_text()
    assert "![landscape.png](landscape.png)" in summary_md
    assert "BatchNorm lowers the effective beta-smoothness" in summary_md
    # One verdict line per claim, from seeds paired across the two cells (both ran seeds 0 and 1).
    line = re.search(
        r"- \*\*(supported|contradicted|no effect|not tested|inconclusive)[^*]*\*\*: “BatchNorm lowers the effective beta-smoothness[^\n]*",
        summary_md,
    )
    assert line is not None, summary_md
    assert "2 seeds" in line.group(0)  # paired by seed

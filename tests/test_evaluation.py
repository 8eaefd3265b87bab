"""Test-time evaluations (ablate.evaluation), input BatchNorm, the first/last gradient ratio and
claims whose sides are two metrics of the same runs."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO, assert_ok, fast_overrides, run_cli, summaries
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from torch import nn

from ablate.config import CONF_DIR
from ablate.diagnostics.gradients import GradientHealth
from ablate.evaluation import Evaluation, accuracy, build, mc_probs, state_weights
from ablate.models import build_model
from ablate.report.judge.claims import judge_all
from ablate.report.load.runs import Run
from ablate.report.load.sweep import Sweep, order_levels
from ablate.run.identity import config_hash
from ablate.study.rounds import claim_cells

OPTIONS = {g: sorted(p.stem for p in (REPO / "conf" / g).glob("*.yaml")) for g in ("norm", "reg", "init")}  # fmt: skip
TECHNIQUES = [f"{g}={o}" for g, opts in OPTIONS.items() for o in opts]


@pytest.fixture(scope="module")
def hydra_ctx():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def net_of(overrides: list[str], channels: int = 1, size: int = 28) -> nn.Module:
    cfg = compose(config_name="train", overrides=overrides)
    return build_model(cfg.model, cfg.norm, cfg.reg, cfg.init, in_channels=channels,
                       num_classes=10, image_size=(size, size))  # fmt: skip


def dropout_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(32, 10))  # fmt: skip


@pytest.mark.parametrize("k", [1, 3, 8])
def test_mc_dropout_is_the_mean_of_k_sampled_passes(k):
    net, x = dropout_mlp().eval(), torch.randn(20, 1, 4, 4)
    torch.manual_seed(5)
    probs = mc_probs(net, x, k)
    torch.manual_seed(5)
    net[4].train()  # the dropout layer samples, BatchNorm stays in eval mode
    by_hand = torch.stack([net(x).softmax(-1) for _ in range(k)]).mean(0)
    net[4].eval()
    torch.testing.assert_close(probs, by_hand)
    assert not net.training and not net[4].training  # every layer back in eval mode
    if k > 1:  # k masks differ: not k copies of one pass
        torch.manual_seed(5)
        assert not torch.allclose(probs, mc_probs(net, x, 1))


def test_mc_dropout_leaves_batchnorm_statistics_alone():
    net, x = dropout_mlp().eval(), torch.randn(20, 1, 4, 4) * 3 + 1
    before = {k: v.clone() for k, v in net.state_dict().items()}
    mc_probs(net, x, 4)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def score(evaluation: Evaluation, net: nn.Module, images: torch.Tensor, labels: torch.Tensor,
          seed: int = 0) -> dict[str, float]:  # fmt: skip
    batches = lambda: ((images[i : i + 16], labels[i : i + 16]) for i in range(0, len(labels), 16))  # noqa: E731
    return evaluation.score(
        net, batches, lambda x: x.float() / 255, lambda x: (x - 0.13) / 0.3, seed
    )


def test_noisy_evaluation_is_seeded_and_leaves_the_clean_score_and_the_net_alone():
    net = dropout_mlp().train()  # left in training mode: scoring must restore it
    images = torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    clean = lambda: accuracy([(net.eval()(((images.float() / 255) - 0.13) / 0.3), labels)])  # noqa: E731
    before, state = clean(), {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    e = Evaluation(noise_std=[0.2, 0.6], mc_samples=[2])
    first, again, other = (
        score(e, net, images, labels),
        score(e, net, images, labels),
        score(e, net, images, labels, seed=1),
    )
    assert net.training  # restored
    assert first == again  # seeded: the same noise and masks for the same seed
    assert (
        first["test/acc_noise0.6"] != other["test/acc_noise0.6"]
        or first["test/acc_noise0.2"] != other["test/acc_noise0.2"]
    )
    assert set(first) == {
        "test/acc_mc2",
        "test/acc_noise0.2",
        "test/acc_noise0.6",
        "test/drop_noise0.2",
        "test/drop_noise0.6",
    }
    for s in ("0.2", "0.6"):  # the drop is against the same net on the clean images
        assert first[f"test/drop_noise{s}"] == pytest.approx(before - first[f"test/acc_noise{s}"])
    assert clean() == before  # the clean score is unchanged
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-0.01, 0.01, allow_nan=False), min_size=1, max_size=60),
       st.floats(1e-4, 5e-3))  # fmt: skip
def test_weight_statistics_match_numpy(values, tol):
    w = torch.tensor(values, dtype=torch.float32)
    stats = Evaluation(zero_tol=tol).weights([w.view(1, -1), w.view(-1, 1) * 2])
    both = np.concatenate([np.float32(values), np.float32(values) * 2])
    assert stats["weights/near_zero"] == pytest.approx(np.mean(np.abs(both) < np.float32(tol)))
    assert stats["weights/norm"] == pytest.approx(float(np.linalg.norm(both)), rel=1e-5)


def test_state_weights_are_the_penalized_weights(hydra_ctx):
    net = net_of(["model=cnn", "norm=batch"])
    from ablate.techniques.reg import split_decay

    weights, _, _ = split_decay(net)
    assert [t.data_ptr() for t in state_weights(net.state_dict())] == [
        w.data_ptr() for w in weights
    ]


@pytest.fixture(scope="module")
def evaluations(hydra_ctx) -> list[Evaluation]:
    """eval=mc_dropout and eval=noisy as composed; k cut to [1, 2] (50 CNN passes per test would
    dominate the suite)."""
    built = [
        build(compose(config_name="train", overrides=[f"eval={o}"]).eval)
        for o in ("mc_dropout", "noisy")
    ]
    return [dataclasses.replace(e, mc_samples=[1, 2]) if e.mc_samples else e for e in built]


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("technique", TECHNIQUES)
def test_eval_options_score_every_norm_reg_and_init(model, technique, evaluations):
    if model == "mlp" and technique == "norm=instance":
        pytest.skip("refused for an MLP before anything is built (tests/test_compose.py)")
    net = net_of([f"model={model}", technique]).eval()
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    for evaluation in evaluations:
        out = score(evaluation, net, images, torch.randint(0, 10, (4,)))
        wanted = [f"test/acc_mc{k}" for k in evaluation.mc_samples] + [
            f"test/acc_noise{s:g}" for s in evaluation.noise_std
        ]
        assert wanted and set(wanted) <= set(out)
        assert all(0.0 <= out[k] <= 1.0 for k in wanted)


def eval_node(option: str) -> dict:
    return OmegaConf.to_container(compose(config_name="train", overrides=[f"eval={option}"]).eval)


def test_eval_standard_keeps_earlier_runs_identity(hydra_ctx):
    earlier = {"seed": 3, "model": {"_target_": "ablate.models.mlp.MLP", "width": 64}}
    assert config_hash({**earlier, "eval": eval_node("standard")}) == config_hash(earlier)
    assert config_hash({**earlier, "eval": eval_node("noisy")}) != config_hash(earlier)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("technique", TECHNIQUES)
def test_input_batchnorm_composes_with_every_norm_reg_and_init(model, technique, hydra_ctx):
    if model == "mlp" and technique == "norm=instance":
        pytest.skip("refused for an MLP before anything is built (tests/test_compose.py)")
    on = net_of([f"model={model}", technique, "model.input_bn=true"], channels=3, size=32)
    off = net_of([f"model={model}", technique], channels=3, size=32)
    first = next(m for m in on.modules() if isinstance(m, nn.BatchNorm2d))  # registered first
    assert isinstance(first, nn.BatchNorm2d) and first.num_features == 3 and first.affine
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(on) - count(off) == 2 * 3  # its gamma and beta per channel, nothing else
    assert len(on.state_dict()) - len(off.state_dict()) == 5  # + running mean, var, batch count
    x = torch.rand(4, 3, 32, 32) * 50 + 7  # far from zero mean and unit scale
    loss = on(x).logsumexp(-1).mean()
    loss.backward()
    assert first.weight.grad is not None and torch.isfinite(loss)


def test_gradient_health_summary_is_the_mean_log_ratio_of_first_to_last():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Linear(4, 2))
    health = GradientHealth(every_n_steps=1)
    trainer = SimpleNamespace(global_step=0, loggers=[])
    ratios = []
    for step, (first, last) in enumerate([(0.01, 1.0), (2.0, 0.5), (0.3, 0.3)]):
        trainer.global_step = step
        for m, norm in ((net[0], first), (net[2], 7.0), (net[3], last)):
            m.weight.grad = torch.full_like(m.weight, norm / math.sqrt(m.weight.numel()))
        health.on_before_optimizer_step(trainer, net, None)
        ratios.append(math.log10(first / last))
    out = health.summary()["metrics"]
    assert out["grads/first_over_last_log10"] == pytest.approx(np.mean(ratios), abs=1e-6)
    assert out["grads/first_over_last_log10_abs"] == pytest.approx(
        np.mean(np.abs(ratios)), abs=1e-6
    )
    restored = GradientHealth()
    restored.load_state_dict(health.state_dict())  # a resumed run keeps the steps it measured
    assert restored.summary() == health.summary()


def metric_runs(acc: list[float], mc1: list[float], width: str = "512") -> list[Run]:
    runs = []
    for seed, (a, m) in enumerate(zip(acc, mc1, strict=True)):
        r = Run(f"model.width={width},seed={seed}", "completed", seed=seed,
                overrides={"model.width": width}, metrics={"test/acc": a, "test/acc_mc1": m})  # fmt: skip
        r.factors = {"model.width": width}
        runs.append(r)
    return runs


MC_CLAIM = {"text": "scaling beats one mask", "metric": "test/acc", "factor": "metric",
            "better": "test/acc", "worse": "test/acc_mc1"}  # fmt: skip


def judged(runs: list[Run], claim: dict) -> object:
    levels = {f: order_levels((r.factors[f] for r in runs), []) for f in runs[0].factors}
    (verdict,) = judge_all(Sweep(REPO, runs, list(levels), levels, None, None, [claim], 1000.0))
    return verdict


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 0.99), st.floats(-0.05, 0.05)), min_size=3, max_size=12))
def test_a_metric_claim_pairs_the_two_metrics_of_each_run(values):
    acc = [a for a, _ in values]
    mc1 = [min(max(a - d, 0.0), 1.0) for a, d in values]
    v = judged(metric_runs(acc, mc1), MC_CLAIM)
    assert v.comparison is not None and v.comparison.pairing == "paired"
    want = np.float64(acc) - np.float64(mc1)
    assert v.comparison.n == len(values)
    assert v.comparison.mean == pytest.approx(float(np.mean(want)), abs=1e-6)  # ties: float noise


@pytest.mark.parametrize(("gap", "verdict"), [(0.02, "supported"), (-0.02, "contradicted"),
                                                (0.0, "no effect")])  # fmt: skip
def test_metric_claim_verdicts(gap, verdict):
    rng = np.random.default_rng(3)
    acc = list(0.9 + rng.normal(0, 0.003, 12))
    mc1 = [a - gap + rng.normal(0, 0.0005) for a in acc]
    assert judged(metric_runs(acc, mc1), MC_CLAIM).verdict == verdict


def test_a_study_extends_every_cell_of_a_metric_claim():
    factors = {"model.width": ["512", "256"], "optim.lr": ["0.1", "0.03"]}
    cells = claim_cells({**MC_CLAIM, "where": {"optim.lr": 0.1}}, factors)
    assert cells == [("512", "0.1"), ("256", "0.1")]
    assert len(claim_cells(MC_CLAIM, factors)) == 4


@pytest.mark.parametrize("option", ["mc_dropout", "noisy"])
def test_eval_options_train_from_the_cli_and_never_change_training(option, data_root, tmp_path):
    """eval=standard and one other option on the same tiny run: the same clean test accuracy
    (the test-time scores touch neither training nor the clean score), the option's metrics."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "model=mlp", "reg=dropout", f"eval=standard,{option}",
                   *fast_overrides(data_root, tmp_path), f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert_ok(proc)
    found = summaries(sweep)
    standard, other = found["eval=standard"], found[f"eval={option}"]
    assert standard["status"] == other["status"] == "completed"
    assert standard["metrics"]["test/acc"] == other["metrics"]["test/acc"]
    for s in (standard, other):  # every run records its weights' statistics
        assert 0.0 <= s["metrics"]["weights/near_zero"] <= 1.0 and s["metrics"]["weights/norm"] > 0
    extra = {
        "mc_dropout": ["test/acc_mc1", "test/acc_mc50"],
        "noisy": ["test/acc_noise0.4", "test/drop_noise0.4"],
    }
    assert all(k in other["metrics"] for k in extra[option])
    assert not any(k in standard["metrics"] for k in extra[option])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (sweep / f"eval={option}").rglob("events.out.tfevents*")
    board = EventAccumulator(str(events))
    board.Reload()
    assert set(extra[option]) <= set(board.Tags()["scalars"])  # beside test/acc in TensorBoard


def test_the_test_time_plot_draws_only_what_the_runs_scored(tmp_path):
    from ablate.report.render.test_time import plot_test_time

    runs = metric_runs([0.97, 0.96, 0.965], [0.93, 0.94, 0.935])
    for r, extra in zip(runs, (0.95, 0.955, 0.96), strict=True):
        r.metrics |= {"test/acc_mc5": extra, "test/acc_noise0.4": extra - 0.2}
    levels = {f: order_levels((r.factors[f] for r in runs), []) for f in runs[0].factors}
    sweep = Sweep(REPO, runs, list(levels), levels, None, None, [], 1000.0)
    assert plot_test_time(sweep, tmp_path / "both.png")
    assert (tmp_path / "both.png").stat().st_size > 10_000
    for r in runs:  # a sweep without test-time scores draws nothing
        r.metrics = {"test/acc": r.metrics["test/acc"]}
    assert not plot_test_time(sweep, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()

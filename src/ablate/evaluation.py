"""Test-time evaluations (conf/eval): Monte-Carlo dropout, Gaussian pixel noise, weight statistics.

Each scores the checkpoint the test split scored (the best on validation) and adds metrics to
summary.json; none changes training, so a run's weights do not depend on them:

- `test/acc_mc<k>`: the mean of the softmax outputs of k forward passes with dropout on (fresh
  masks each pass, BatchNorm in eval mode): the Monte-Carlo model average that Srivastava et al.
  2014 (Sec. 7.5, Fig. 11) compare with weight scaling, which is `test/acc` itself (inverted
  dropout scales at training time, so an eval-mode net is the weight-scaled one).
- `test/acc_noise<s>`: accuracy on the test images with N(0, s^2) added to every pixel in [0, 1]
  units, clipped to [0, 1], before standardization (the noise is seeded by the run's seed);
  `test/drop_noise<s>` the accuracy it loses against the same net on the clean images.
- `weights/near_zero` and `weights/norm` (always): the fraction of conv/linear weights with
  |w| < `zero_tol` and their joint L2 norm, over the weights the penalties act on (never biases
  or norms): what L1 against L2 and dropout do to the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import torch
from hydra.utils import instantiate
from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass
from torch import nn

from ablate.schema.fields import allowed

Counts = Annotated[
    list[Annotated[int, Field(gt=0)]], allowed("a list of positive integers, e.g. [1, 10, 50]")
]
Strengths = Annotated[
    list[Annotated[float, Field(gt=0, le=1)]],
    allowed("a list of numbers in (0, 1], e.g. [0.2, 0.4]"),
]
NOISE_STREAM = 7  # the noise's own generator stream: no other draw of the run shifts it
DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def label(value: float) -> str:
    """A strength as a metric name spells it: 0.2 -> '0.2', 1.0 -> '1'."""
    return f"{value:g}"


@dataclass(frozen=True, config=ConfigDict(strict=True, allow_inf_nan=False))
class Evaluation:
    """What the chosen checkpoint is scored on besides the clean test split."""

    mc_samples: Counts = Field(default_factory=list)  # k per Monte-Carlo dropout score
    noise_std: Strengths = Field(default_factory=list)  # pixel noise std, [0, 1] pixel units
    zero_tol: Annotated[float, Field(gt=0), allowed("a number > 0")] = 1e-3  # |w| below: zero

    @property
    def extra(self) -> bool:
        """Whether it scores anything beyond the test split and the weights."""
        return bool(self.mc_samples or self.noise_std)

    def weights(self, weights: Iterable[torch.Tensor]) -> dict[str, float]:
        """The fraction of weights with |w| < zero_tol and their joint L2 norm."""
        flat = torch.cat([w.detach().flatten().float() for w in weights])
        return {
            "weights/near_zero": float((flat.abs() < self.zero_tol).float().mean()),
            "weights/norm": float(flat.norm()),
        }

    def score(
        self,
        net: nn.Module,
        batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
        prepare: Callable[[torch.Tensor], torch.Tensor],
        standardize: Callable[[torch.Tensor], torch.Tensor],
        seed: int,
    ) -> dict[str, float]:
        """The test metrics asked for: `batches()` yields the raw test batches, `prepare` makes
        their pixels in [0, 1], `standardize` the network's input from those pixels."""
        out: dict[str, float] = {}
        was_training = net.training
        net.eval()
        try:
            for k in self.mc_samples:
                torch.manual_seed(seed)  # the same masks for the same run and k
                out[f"test/acc_mc{k}"] = accuracy(
                    (mc_probs(net, standardize(prepare(x)), k), y) for x, y in batches()
                )
            # The clean pass only when a drop is asked for; it is test/acc without tta_flip.
            if self.noise_std:
                clean = accuracy((net(standardize(prepare(x))), y) for x, y in batches())
            for s in self.noise_std:
                g = torch.Generator().manual_seed(seed * 1000 + NOISE_STREAM)
                acc = accuracy((net(standardize(noisy(prepare(x), s, g))), y) for x, y in batches())
                out[f"test/acc_noise{label(s)}"] = acc
                out[f"test/drop_noise{label(s)}"] = clean - acc  # points lost to the noise
        finally:
            net.train(was_training)
        return out


@torch.no_grad()
def mc_probs(net: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    """The mean softmax of k passes with every dropout layer sampling masks (the rest in eval)."""
    drops = [m for m in net.modules() if isinstance(m, DROPOUT_TYPES)]
    for m in drops:
        m.train()
    try:
        return torch.stack([net(x).softmax(-1) for _ in range(k)]).mean(0)
    finally:
        for m in drops:
            m.eval()


def noisy(pixels: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Pixels in [0, 1] plus N(0, std^2), clipped to [0, 1] (drawn on the CPU: any device, same noise)."""
    noise = torch.randn(pixels.shape, generator=generator) * std
    return (pixels + noise.to(pixels.device)).clamp_(0.0, 1.0)


@torch.no_grad()
def accuracy(scored: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """The fraction of correct argmax predictions over (scores, labels) batches."""
    right = total = 0
    for scores, y in scored:
        right += int((scores.argmax(-1) == y).sum())
        total += len(y)
    return right / max(total, 1)


def state_weights(state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The conv/linear weights of a state_dict: its >= 2-D `weight`s (norms' are 1-D)."""
    return [t for k, t in state.items() if k.endswith("weight") and t.dim() > 1]


def build(node: Any) -> Evaluation:
    """The eval node of a config as its Evaluation (lists as lists: the record is strict)."""
    return instantiate(node, _convert_="all")


def test_time(evaluation: Evaluation, model: nn.Module, datamodule, seed: int) -> dict[str, float]:
    """The evaluation's metrics for a fitted Classifier (at its tested checkpoint) and its data."""
    return evaluation.weights(model.decay_weights) | extras(
        evaluation, model, datamodule, seed, model.device
    )


def of_state(evaluation: Evaluation, net: nn.Module, state: dict[str, torch.Tensor], datamodule,
             seed: int) -> dict[str, float]:  # fmt: skip
    """The metrics of a solo net at `state` (a seed of a group at its tested checkpoint)."""
    net.load_state_dict(state)
    return evaluation.weights(state_weights(state)) | extras(evaluation, net, datamodule, seed)


def extras(evaluation: Evaluation, net: nn.Module, datamodule, seed: int,
           device: torch.device | str = "cpu") -> dict[str, float]:  # fmt: skip
    """The MC-dropout and noise scores of one net on its datamodule's test split ({} if none)."""
    if not evaluation.extra:
        return {}
    loader = datamodule.test_dataloader()[0]  # loader 0: the test split
    batches = lambda: ((x.to(device), y.to(device)) for x, y in loader)  # noqa: E731
    return evaluation.score(net, batches, datamodule.pixels, datamodule.standardized, seed)

"""One optimizer step of K stacked seeds, in automatic optimization's order (module.py): forward,
zero_grad, backward, decoupled decay, step, max-norm, scheduler. Each seed's loss, penalty and
constraint are its own, so its gradient and update are those of its solo run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ablate.group.stack import StackedNet
from ablate.techniques.reg import Reg


@dataclass
class StepValues:
    """A step's per-seed (K,) values, detached."""

    loss: torch.Tensor
    data_loss: torch.Tensor
    penalty: torch.Tensor
    correct: torch.Tensor  # training images classified right in this batch
    projected: torch.Tensor | None  # max-norm rows rescaled (None: max-norm off)


class StackedStep:
    """The stacked net's optimizer (the solo param groups: weights decay, biases and norms exempt)."""

    def __init__(self, net: StackedNet, reg: Reg, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., object] | None, total_steps: float) -> None:  # fmt: skip
        self.net, self.reg, self.k = net, reg, net.k
        self.decay = net.decay_weights()
        others = [p for p in net.parameters() if all(p is not w for w in self.decay)]
        self.optimizer = optimizer(params=reg.param_groups(self.decay, others))
        self.scheduler = scheduler(optimizer=self.optimizer, total_steps=total_steps) \
            if scheduler else None  # fmt: skip
        self.before_step: list[Callable[[torch.optim.Optimizer], None]] = []  # e.g. decay counters

    def penalty(self) -> torch.Tensor:
        """(K,) each seed's explicit penalty: l1 * sum|w| + l2 * sum w^2 over its weights."""
        total = torch.zeros(self.k, device=self.decay[0].device if self.decay else None)
        for w in self.decay:
            if self.reg.l1:
                total = total + self.reg.l1 * w.abs().sum((1, 2))
            if self.reg.l2:
                total = total + self.reg.l2 * w.pow(2).sum((1, 2))
        return total

    def max_norm_(self) -> torch.Tensor | None:
        """Max-norm per seed (Srivastava et al. 2014, Sec. 5.1): (K,) rows rescaled."""
        if self.reg.max_norm is None:
            return None
        projected = torch.zeros(self.k, dtype=torch.long, device=self.decay[0].device)
        with torch.no_grad():
            for w in self.decay:
                # w is (K, in, out): a unit's incoming weights are a column
                norms = torch.linalg.vector_norm(w, dim=1)  # (K, out)
                projected += (norms > self.reg.max_norm).sum(1)
                w.mul_((self.reg.max_norm / norms).clamp_(max=1.0)[:, None])  # a zero column: 1
        return projected

    def __call__(self, x: torch.Tensor, y: torch.Tensor, alive: torch.Tensor) -> StepValues:
        """One step on (K, B, ...) inputs and (K, B) labels; seeds not `alive` get no gradient."""
        logits = self.net(x)
        k, b = y.shape
        data_loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none",
                                    label_smoothing=self.reg.label_smoothing).view(k, b).mean(1)  # fmt: skip
        penalty = self.penalty()
        loss = data_loss + penalty
        self.optimizer.zero_grad()
        torch.where(alive, loss, 0.0).sum().backward()  # seed k's gradient: its own loss's
        for hook in self.before_step:
            hook(self.optimizer)
        self.reg.decay_(self.optimizer)
        self.optimizer.step()
        projected = self.max_norm_()
        if self.scheduler is not None:
            self.scheduler.step()
        correct = (logits.detach().argmax(-1) == y).sum(1)
        return StepValues(loss.detach(), data_loss.detach(), penalty.detach(), correct, projected)

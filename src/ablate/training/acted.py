"""Whether each regularizer of `reg` acted in training: summary.json's "techniques".

A technique that is on may still do nothing (a max-norm limit no weight reaches, dropout2d in a net
without feature maps), and then comparing runs with and without it tests nothing. Counted cheaply:
no random draws, and sums stay on the device until the run ends (no host sync per step).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn

from ablate.techniques.reg import Reg, penalty

SHARE_ACTED = 1e-6  # a penalty below this share of the loss did not act
SAMPLE_EVERY = 10  # dropout masks are measured at every SAMPLE_EVERY-th training step
CONV_OR_LINEAR = (nn.Conv2d, nn.Linear)


def dropout_modules(net: nn.Module) -> dict[str, list[nn.Module]]:
    """The net's Dropout modules by the `reg` rate that made them (dropout, dropout2d, input_dropout).

    A Dropout registered before the first conv/linear layer acts on the input (every model builds
    its input dropout first); Dropout2d acts on feature maps.
    """
    found: dict[str, list[nn.Module]] = {"dropout": [], "dropout2d": [], "input_dropout": []}
    seen_layer = False
    for module in net.modules():
        if isinstance(module, CONV_OR_LINEAR):
            seen_layer = True
        elif isinstance(module, nn.Dropout2d):
            found["dropout2d"].append(module)
        elif isinstance(module, nn.Dropout):
            found["dropout" if seen_layer else "input_dropout"].append(module)
    return found


class TechniqueUse(L.Callback):
    """Counts what each regularizer that is on did; `record()` is summary.json's "techniques".

    - max_norm: rows rescaled (their norm exceeded the limit), summed over every constraint call;
    - l1, l2: the explicit penalty's share of the training loss, sum(penalty) / sum(loss) over all
      steps (both on: that share split by the two terms' sizes at the end of training);
    - dropout rates: the fraction of non-zero inputs a Dropout zeroed, measured on the masks at
      every SAMPLE_EVERY-th step (an elementwise compare, so sampled: the rate is fixed, the sample
      shows the modules exist and ran in training mode); not measured in a compiled net (hooks
      there would recompile it), where the fraction given is the rate;
    - weight_decay: 1 - prod(1 - lr * wd) over steps, the fraction of a weight the decay alone took;
    - label_smoothing: fixed, so only that it was on.
    """

    def __init__(self, reg: Reg, sample_every: int = SAMPLE_EVERY) -> None:
        self.reg = reg
        self.sample_every = sample_every
        self.state: dict[str, Any] = {"max_norm_steps": 0, "decay_steps": 0, "decay_sum": 0.0,
                                      "decay_keep": 1.0}  # fmt: skip
        self.sums: dict[str, torch.Tensor] = {}  # device tensors, created at the first use
        self.dropout: dict[str, list[nn.Module]] = {}
        self.measured = True
        self.split: dict[str, float] = {}  # l1 and l2 terms at the end of training
        self._trainer: L.Trainer | None = None
        self._fitting = False
        self._hooked = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # trainer.test(ckpt_path=best) restores callbacks too: it must not swap in older counts.
        self._fitting = stage == "fit"
        self._trainer = trainer
        if stage != "fit" or self._hooked:
            return
        self._hooked = True
        net = getattr(pl_module, "net", pl_module)
        found = dropout_modules(net).items()
        self.dropout = {k: m for k, m in found if m and getattr(self.reg, k)}
        self.measured = getattr(net, "_compiled_call_impl", None) is None
        if self.measured:
            for name, modules in self.dropout.items():
                for module in modules:
                    module.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def count(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
        ) -> None:
            if not (module.training and self._sampled_step()):
                return
            kept = inputs[0] != 0  # an input already zero (after a ReLU) was not dropped
            self._add(f"{name}_dropped", (kept & (output == 0)).sum())
            self._add(f"{name}_seen", kept.sum())

        return count

    def _add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach()
        value = value if not value.is_floating_point() else value.float()  # counts stay integers
        if key not in self.sums:
            self.sums[key] = torch.zeros((), dtype=value.dtype, device=value.device)
        elif self.sums[key].device != value.device:  # restored from a checkpoint (on the CPU)
            self.sums[key] = self.sums[key].to(value.device)
        self.sums[key] += value

    def _sampled_step(self) -> bool:
        """Whether this forward pass is a sampled training step's (one in every sample_every)."""
        # Read per forward pass, not per batch: a batch may be a chunk of steps (training/chunks.py).
        trainer = self._trainer
        return (
            trainer is not None
            and trainer.training
            and trainer.global_step % self.sample_every == 0
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:  # fmt: skip
        values = getattr(pl_module, "step_values", {})
        if (projected := values.pop("max_norm_projected", None)) is not None:
            self._add("max_norm_projections", projected)
            self.state["max_norm_steps"] += values.get("steps", 1)  # a chunk's steps
        if (self.reg.l1 or self.reg.l2) and "penalty" in values:
            self._add("penalty", values["penalty"])
            self._add("loss", values["loss"])

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:  # fmt: skip
        if not self.reg.weight_decay:
            return
        # What Reg.decay_ applies next (after this hook): the learning rates are host floats.
        rates = [g["lr"] * g.get("decoupled_weight_decay", 0.0) for g in optimizer.param_groups]
        rate = max((float(r) for r in rates if not torch.is_tensor(r)), default=0.0)
        self.state["decay_steps"] += 1
        self.state["decay_sum"] += rate
        self.state["decay_keep"] *= 1.0 - rate

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.reg.l1 and self.reg.l2:
            weights = getattr(pl_module, "decay_weights", [])
            with torch.no_grad():
                self.split = {k: float(penalty(weights, **{k: getattr(self.reg, k)}))
                              for k in ("l1", "l2")}  # fmt: skip

    def record(self) -> dict[str, dict[str, Any]]:
        """What each technique that was on did, with `acted` (bool) per technique."""
        reg, total = self.reg, lambda k: float(self.sums[k]) if k in self.sums else 0.0  # noqa: E731
        out: dict[str, dict[str, Any]] = {}
        if reg.max_norm is not None:
            n = int(total("max_norm_projections"))
            out["max_norm"] = {"limit": reg.max_norm, "projections": n,
                               "steps": self.state["max_norm_steps"], "acted": n > 0}  # fmt: skip
        loss, pen = total("loss"), total("penalty")
        share = pen / loss if loss and math.isfinite(pen / loss) else None
        terms = self.split if sum(self.split.values()) > 0 else None
        for k in ("l1", "l2"):
            if getattr(reg, k):
                own = (
                    share
                    if share is None or terms is None
                    else share * terms[k] / sum(terms.values())
                )
                out[k] = {"coefficient": getattr(reg, k), "loss_share": own,
                          "acted": own is not None and own > SHARE_ACTED}  # fmt: skip
        for k, modules in self.dropout.items():
            seen = total(f"{k}_seen")  # 0: compiled, or no step sampled; then the rate is given
            dropped = total(f"{k}_dropped") / seen if seen else getattr(reg, k)
            out[k] = {"rate": getattr(reg, k), "modules": len(modules), "dropped": dropped,
                      "measured": bool(seen), "acted": dropped > 0}  # fmt: skip
        for k in ("dropout", "dropout2d", "input_dropout"):
            if getattr(reg, k) and k not in out:  # on, but the net has no such module
                out[k] = {"rate": getattr(reg, k), "modules": 0, "dropped": 0.0, "acted": False}
        if reg.weight_decay:
            shrink = 1.0 - self.state["decay_keep"]
            out["weight_decay"] = {"coefficient": reg.weight_decay, "steps": self.state["decay_steps"],
                                   "lr_wd_sum": self.state["decay_sum"], "shrink": shrink,
                                   "acted": shrink > 0}  # fmt: skip
        if reg.label_smoothing:
            out["label_smoothing"] = {"epsilon": reg.label_smoothing, "acted": True}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**self.state, "sums": {k: v.detach().cpu() for k, v in self.sums.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._fitting:
            return
        self.state.update({k: v for k, v in state_dict.items() if k in self.state})
        self.sums = {k: v.clone() for k, v in state_dict.get("sums", {}).items()}

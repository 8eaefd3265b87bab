"""K solo networks as one: each layer's K copies stacked on a leading seed axis, run as batched ops.

Measured on the 2-core CPU (benchmarks/vectorized_seeds.py): stacked batched matmuls beat
torch.func.vmap, 1.55x at K=16 without a norm and 1.93x at K=8 with BatchNorm, so each layer has a
stacked version written with bmm. Seed k of every tensor is seed k's solo net: `StackedNet(nets)`
copies the K solo nets in (built and initialized exactly as K solo runs build them), `unstack(k)`
gives seed k's solo state_dict back. Inputs and activations are (K, B, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ablate.techniques.norm import AsVectors, NoisyShift


class NotStackable(ValueError):
    """A layer with no stacked version: the group trainer refuses the config (one line)."""


class StackedLinear(nn.Module):
    """K Linear layers: y_k = x_k W_k^T + b_k, with W^T stored (K, in, out) and bias (K, out).

    Stored transposed: a batched matmul with a contiguous (K, in, out) operand is 10-20% faster
    on the CPU than with a transposed view of (K, out, in) (784 -> 100, batch 60, K = 4 and 16).
    """

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.weight_t = nn.Parameter(
            torch.stack([m.weight.detach().T for m in layers]).contiguous()
        )
        bias = [m.bias for m in layers]
        self.bias = (
            None if bias[0] is None else nn.Parameter(torch.stack([b.detach() for b in bias]))
        )
        self.names = ("bias",)  # per-seed tensors named as the solo layer names them
        self.transposed = ("weight",)  # solo `weight` is weight_t[k].T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_t
        return torch.bmm(x, w) if self.bias is None else torch.baddbmm(self.bias[:, None], x, w)


class StackedBatchNorm(nn.Module):
    """K BatchNorms over (K, B, C): one F.batch_norm over B x (K*C) channels (each seed's own stats)."""

    def __init__(self, layers: Sequence[nn.BatchNorm2d]) -> None:
        super().__init__()
        first = layers[0]
        self.eps, self.momentum, self.affine = first.eps, first.momentum, first.affine
        stack = lambda name: torch.stack([getattr(m, name).detach() for m in layers])  # noqa: E731
        if self.affine:
            self.weight, self.bias = nn.Parameter(stack("weight")), nn.Parameter(stack("bias"))
        self.register_buffer("running_mean", stack("running_mean"))
        self.register_buffer("running_var", stack("running_var"))
        self.register_buffer("num_batches_tracked", first.num_batches_tracked.detach().clone())
        self.names = ("weight", "bias", "running_mean", "running_var")
        self.shared = ("num_batches_tracked",)  # one counter: every seed steps together

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, c = x.shape
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # a cumulative average, as nn.BatchNorm does
                momentum = 1.0 / float(self.num_batches_tracked)
        flat = x.transpose(0, 1).reshape(b, k * c, 1, 1)  # the solo layer's (N, C, 1, 1) maps
        out = F.batch_norm(
            flat, self.running_mean.view(-1), self.running_var.view(-1),
            self.weight.reshape(-1) if self.affine else None,
            self.bias.reshape(-1) if self.affine else None,
            self.training, momentum or 0.0, self.eps,
        )  # fmt: skip
        return out.view(b, k, c).transpose(0, 1)


class StackedGroupNorm(nn.Module):
    """K GroupNorms over (K, B, C) features as one GroupNorm of K*G groups over K*C channels.

    A group never spans two seeds, so its statistics are the solo layer's; and the affine stays in
    the kernel, where it is fused as the solo layer fuses it. (Applied after a plain group_norm,
    it rounds otherwise, and a group of 2 features, e.g. 8 groups of width 16, amplifies that.)
    """

    def __init__(self, layers: Sequence[nn.GroupNorm]) -> None:
        super().__init__()
        first = layers[0]
        self.groups, self.eps, self.affine = first.num_groups, first.eps, first.affine
        if self.affine:
            self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]))
            self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in layers]))
        self.names = ("weight", "bias")  # per-seed tensors, as the solo layer names them

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, c = x.shape
        flat = x.transpose(0, 1).reshape(b, k * c, 1, 1)
        out = F.group_norm(flat, k * self.groups, self.weight.reshape(-1) if self.affine else None,
                           self.bias.reshape(-1) if self.affine else None, self.eps)  # fmt: skip
        return out.view(b, k, c).transpose(0, 1)


class SeedRandom(nn.Module):
    """A layer whose random draws come from each seed's own generator, in seed order.

    Seed k's generator starts where seed k's solo run has the global generator when it starts
    training (nothing else draws from it in a run), and draws the same shapes in the same order: a
    seed's dropout masks do not depend on K or on its neighbours.
    """

    def __init__(self) -> None:
        super().__init__()
        self.generators: list[torch.Generator] = []

    def draw(self, fill: Callable[[torch.Tensor, torch.Generator], None], like: torch.Tensor,
             shape: tuple[int, ...]) -> torch.Tensor:  # fmt: skip
        """(K, *shape): slice k filled in place by fill(slice, generator k)."""
        out = torch.empty((len(self.generators), *shape), dtype=like.dtype, device=like.device)
        for slot, g in zip(out, self.generators, strict=True):
            fill(slot, g)
        return out


class StackedDropout(SeedRandom):
    """Inverted dropout with a mask per seed from its generator (the mask F.dropout draws on CPU)."""

    def __init__(self, p: float, kind: str = "dropout") -> None:
        super().__init__()
        self.p, self.kind = p, kind  # kind: the reg rate that made it (dropout or input_dropout)
        self.measure = False  # set for a sampled step: count what the masks dropped, per seed
        self.counts: list[tuple[torch.Tensor, torch.Tensor]] = []  # (dropped, seen), each (K,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        noise = self.draw(lambda s, g: s.bernoulli_(keep, generator=g), x, tuple(x.shape[1:]))
        if self.measure:  # as TechniqueUse counts: an input already zero was not dropped
            kept = (x != 0).flatten(1)
            self.counts.append(((kept & (noise.flatten(1) == 0)).sum(1), kept.sum(1)))
        return x * noise.div_(keep)


class StackedNoisyShift(SeedRandom):
    """NoisyShift (Santurkar et al. 2018) with each seed's scale and shift from its generator."""

    def __init__(self, layer: NoisyShift) -> None:
        super().__init__()
        self.shift, self.scale, self.per_sample = layer.shift, layer.scale, layer.per_sample
        self.jitter = layer.jitter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        shape = (x.shape[1] if self.per_sample else 1, x.shape[2])
        low, high = self.scale

        def fill(slot: torch.Tensor, g: torch.Generator) -> None:  # solo order: scale, then shift
            slot[0].uniform_(low, high, generator=g)
            slot[1].uniform_(-self.shift, self.shift, generator=g)

        drawn = self.draw(fill, x, (2, *shape))
        s, m = drawn[:, 0], drawn[:, 1]
        if self.jitter is not None:  # each seed's generator: its step draw, then its elements'
            r_m, r_s = self.jitter

            def spread(slot: torch.Tensor, g: torch.Generator) -> None:  # solo order: m, then s
                slot[0].uniform_(-r_m, r_m, generator=g)
                slot[1].normal_(generator=g)

            jit = self.draw(spread, x, (2, *x.shape[1:]))
            s, m = s + jit[:, 1] * r_s, m + jit[:, 0]
        return x * s + m


class Elementwise(nn.Module):
    """A stateless layer (an activation) applied as it is: it acts per element, seed by seed."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.names: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _stacked(layers: Sequence[nn.Module]) -> list[tuple[str, nn.Module]]:
    """The stacked version of one solo layer (K copies): [(its solo name suffix, stacked module)]."""
    first = layers[0]
    if isinstance(first, nn.Flatten):
        return []  # the group's inputs are flattened once, to (K, B, features)
    if isinstance(first, nn.Linear):
        return [("", StackedLinear(layers))]
    if isinstance(first, nn.Dropout):
        return [("", StackedDropout(first.p))]  # its kind: set by StackedNet from its position
    if isinstance(first, AsVectors):
        return [(f"norm{sub}", m) for sub, m in _stacked([m.norm for m in layers])]
    if isinstance(first, nn.Sequential):  # e.g. batch_noisy: BatchNorm then NoisyShift
        return [(f".{i}{sub}", m) for i in range(len(first))
                for sub, m in _stacked([s[i] for s in layers])]  # fmt: skip
    if isinstance(first, nn.BatchNorm2d):
        return [("", StackedBatchNorm(layers))]
    if isinstance(first, nn.GroupNorm):
        return [("", StackedGroupNorm(layers))]
    if isinstance(first, NoisyShift):
        return [("", StackedNoisyShift(first))]
    if not any(True for _ in first.parameters()) and not any(True for _ in first.buffers()):
        return [("", Elementwise(first))]
    raise NotStackable(f"{type(first).__name__} has no stacked version (ablate.group.stack)")


class StackedNet(nn.Module):
    """K solo networks of one architecture (`net`: a Sequential of layers) trained as one."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        seqs = [getattr(n, "net", None) for n in nets]
        if not all(isinstance(s, nn.Sequential) for s in seqs):
            raise NotStackable(f"{type(nets[0]).__name__} is not a Sequential `net`: only model=mlp "
                               "trains as a group")  # fmt: skip
        self.k = len(nets)
        layers, self.solo_names = [], []  # solo_names[i]: layer i's solo prefix, e.g. "net.1"
        for i in range(len(seqs[0])):
            for sub, module in _stacked([s[i] for s in seqs]):
                layers.append(module)
                self.solo_names.append(f"net.{i}{'.' + sub.lstrip('.') if sub else ''}")
        self.layers = nn.Sequential(*layers)
        seen_linear = False  # a Dropout before the first Linear acts on the input (acted.py)
        for m in self.layers:
            seen_linear = seen_linear or isinstance(m, StackedLinear)
            if isinstance(m, StackedDropout):
                m.kind = "dropout" if seen_linear else "input_dropout"

    def dropouts(self) -> list[StackedDropout]:
        """The stacked Dropout layers, in order."""
        return [m for m in self.layers if isinstance(m, StackedDropout)]

    def set_generators(self, generators: Sequence[torch.Generator]) -> None:
        """Give every random layer the K seeds' generators (the same objects: one stream per seed)."""
        for m in self.layers:
            if isinstance(m, SeedRandom):
                m.generators = list(generators)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(2))

    def decay_weights(self) -> list[nn.Parameter]:
        """The stacked Linear weights, (K, in, out): what penalties, decay and max-norm act on
        (never biases, norms)."""
        return [m.weight_t for m in self.layers if isinstance(m, StackedLinear)]

    def unstack(self, k: int) -> dict[str, torch.Tensor]:
        """Seed k's solo state_dict (keys as its solo net names them), cloned to the CPU."""
        out: dict[str, torch.Tensor] = {}
        for prefix, module in zip(self.solo_names, self.layers, strict=True):
            for name in getattr(module, "names", ()):
                value = getattr(module, name, None)
                if value is not None:
                    out[f"{prefix}.{name}"] = value[k].detach().cpu().clone()
            for name in getattr(module, "transposed", ()):
                out[f"{prefix}.{name}"] = getattr(module, f"{name}_t")[k].detach().T.cpu().clone()
            for name in getattr(module, "shared", ()):
                out[f"{prefix}.{name}"] = getattr(module, name).detach().cpu().clone()
        return out

    def load_seed(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Put a solo state_dict (from unstack) back into seed k's slices."""
        with torch.no_grad():
            for prefix, module in zip(self.solo_names, self.layers, strict=True):
                for name in getattr(module, "names", ()):
                    value = getattr(module, name, None)
                    if value is not None:
                        value[k].copy_(state[f"{prefix}.{name}"])
                for name in getattr(module, "transposed", ()):
                    getattr(module, f"{name}_t")[k].copy_(state[f"{prefix}.{name}"].T)

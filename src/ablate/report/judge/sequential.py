"""Sequential looks: Lan-DeMets alpha spending, so a claim can be judged after every batch of seeds.

A study that looks at its claims after each batch of new seeds and stops once a claim is decided
must test each look at a smaller, nominal level, or its error rate grows with the number of looks.
`look_alpha(k, K)` is that nominal two-sided level for look k (1-based) of at most K looks.

Method: Lan & DeMets (1983) spending functions, Pocock-type alpha·ln(1 + (e-1)·t) or
O'Brien-Fleming-type 2 - 2·Φ(z_{1-alpha/2} / √t), at information fractions t_k (k/K unless given,
e.g. n_k/n_K seeds). The boundaries c_k are exact for the normal (Brownian motion) model: the
probability of crossing first at look k, P(|Z_1| < c_1, ..., |Z_k-1| < c_k-1, |Z_k| >= c_k), is
computed by recursive numerical integration of the score process (Armitage, McPherson & Rowe 1969)
and solved for c_k to equal the alpha spent at that look. The nominal level is 2·(1 - Φ(c_k));
the t-tests of the claims are run at that level (the usual small-sample approximation, Jennison &
Turnbull 2000, Sec. 3.8). No Bonferroni split is used.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import optimize, stats

SPENDING = ("pocock", "obrien-fleming")
_GRID = 1201  # points of the continuation region per look (trapezoid rule)


def spent(t: float, alpha: float = 0.05, kind: str = "pocock") -> float:
    """Lan-DeMets alpha spent by information fraction t in [0, 1] (two-sided)."""
    if t <= 0:
        return 0.0
    t = min(t, 1.0)
    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    if kind == "obrien-fleming":
        return float(2 - 2 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / math.sqrt(t)))
    raise ValueError(f"unknown alpha spending {kind!r}; use one of {SPENDING}")


def _fractions(K: int, fractions: tuple[float, ...] | None) -> tuple[float, ...]:
    if fractions is None:
        return tuple((k + 1) / K for k in range(K))
    if len(fractions) != K or any(
        b <= a for a, b in zip((0.0, *fractions[:-1]), fractions, strict=True)
    ):
        raise ValueError(f"need {K} increasing information fractions, got {fractions}")
    return tuple(f / fractions[-1] for f in fractions)


@lru_cache(maxsize=64)
def _bounds(K: int, alpha: float, kind: str, fractions: tuple[float, ...]) -> tuple[float, ...]:
    """Two-sided z boundaries c_1..c_K of the spending design (normal model)."""
    bounds: list[float] = []
    grid = weights = density = None  # sub-density of S_k = √t_k·Z_k, not yet stopped
    prev_t = 0.0
    for t in fractions:
        target = spent(t, alpha, kind) - spent(prev_t, alpha, kind)
        if grid is None:
            c = float(stats.norm.isf(target / 2))
        else:
            sd = math.sqrt(t - prev_t)

            def excess(c: float, g=grid, w=weights, f=density, sd=sd, t=t, a=target) -> float:
                edge = c * math.sqrt(t)
                out = stats.norm.cdf((-edge - g) / sd) + stats.norm.sf((edge - g) / sd)
                return float(np.sum(w * f * out)) - a

            c = optimize.brentq(excess, 0.0, 40.0, xtol=1e-10) if target > 0 else math.inf
        bounds.append(c)
        edge = min(c, 12.0) * math.sqrt(t)
        new = np.linspace(-edge, edge, _GRID)
        if grid is None:
            new_density = stats.norm.pdf(new, scale=math.sqrt(t))
        else:
            sd = math.sqrt(t - prev_t)
            kernel = stats.norm.pdf((new[:, None] - grid[None, :]) / sd) / sd
            new_density = kernel @ (weights * density)
        grid, density, prev_t = new, new_density, t
        weights = np.full(_GRID, new[1] - new[0])
        weights[[0, -1]] /= 2
    return tuple(bounds)


def boundaries(
    K: int, alpha: float = 0.05, kind: str = "pocock", fractions: tuple[float, ...] | None = None
) -> tuple[float, ...]:
    """The two-sided z boundaries of all K looks."""
    if K < 1:
        raise ValueError(f"need at least one look, got K={K}")
    spent(1.0, alpha, kind)  # validates kind
    return _bounds(K, alpha, kind, _fractions(K, fractions))


def look_alpha(
    k: int,
    K: int,
    alpha: float = 0.05,
    kind: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> float:
    """Nominal two-sided level of look k (1-based) of at most K looks; alpha itself when K = 1."""
    if not 1 <= k <= K:
        raise ValueError(f"look {k} is not one of 1..{K}")
    if K == 1:
        return alpha
    return float(2 * stats.norm.sf(boundaries(K, alpha, kind, fractions)[k - 1]))


def describe(looks: tuple[int, int] | None, kind: str = "pocock") -> str:
    """How the report names the looks: "single look" or "Pocock spending at look k of K"."""
    if looks is None or looks[1] == 1:
        return "single look"
    name = "Pocock" if kind == "pocock" else "O'Brien-Fleming"
    return f"{name} spending at look {looks[0]} of {looks[1]}"

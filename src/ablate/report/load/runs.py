"""Loading runs: one summary.json -> one Run (status, overrides, config, metrics, history)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from ablate.overrides import as_float, bare, parse_overrides
from ablate.run.record import RunRecord, Status, curve

log = logging.getLogger(__name__)

REPORT_DIRNAME = "report"
MOVED_ASIDE = ".old-"  # resume=fresh: <run>.old-<time> (ablate.run.identity.move_aside)
STEPS = "steps_to_target"


@dataclass
class Run:
    """One run of the sweep, as read from its summary.json."""

    name: str
    status: Status | str
    seed: Any = None
    overrides: dict[str, str] = field(default_factory=dict)
    swept: list[str] | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)  # e.g. {"landscape": [probe, ...]}
    steps: float = math.nan
    epochs: float = math.nan
    wall_time_s: float = math.nan
    diverged_at_step: float = math.nan
    error: str | None = None
    factors: dict[str, str] = field(default_factory=dict)  # filled by load_sweep
    steps_to_target: float | None = None  # first step at the target; None: never (or no target)
    path: Path | None = None  # the summary.json it was read from
    git_commit: str | None = None  # the commit the run was trained at ('-dirty': local changes)
    versions: dict[str, str] = field(default_factory=dict)  # python and package versions
    machine: str | None = None  # where it trained, e.g. "x86_64, 16 CPUs (AMD EPYC 9654), 1 x H200"
    cpu_model: str | None = None  # e.g. "AMD EPYC 9654" (None: an older summary)
    cpu_capability: str | None = None  # torch's CPU kernels, e.g. "AVX2"
    gpu_models: list[str] = field(default_factory=list)  # the CUDA GPUs it used
    # per regularizer that was on: what it did, with "acted" (summary.json's "techniques")
    techniques: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.status == Status.COMPLETED

    def lookup(self, key: str) -> Any:
        """A key's value: the override as typed, else the group choice, else the resolved config."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return self.choices[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def metric(self, name: str) -> float:
        """A final metric (or steps_to_target) as a float; nan when absent."""
        if name == STEPS:
            return math.nan if self.steps_to_target is None else self.steps_to_target
        return self.metrics.get(name, math.nan)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a history metric, finite points only, sorted by step."""
        points = curve(self.history, key)
        return np.array([s for s, _ in points], dtype=float), np.array(
            [v for _, v in points], dtype=float
        )


def find_summaries(root: Path) -> list[Path]:
    """Every summary.json under the sweep directory, except in its report/ folder and in the
    `<run>.old-<time>` folders `resume=fresh` moved earlier runs into (not part of the sweep)."""
    found = (p.relative_to(root).parts for p in root.rglob("summary.json"))
    return sorted(
        root.joinpath(*parts)
        for parts in found
        if parts[0] != REPORT_DIRNAME and not any(MOVED_ASIDE in part for part in parts)
    )


def fallback_overrides(run_dir: Path) -> dict[str, str]:
    """Overrides from Hydra's .hydra/overrides.yaml, else from a `k=v,k=v` directory name."""
    saved = run_dir / ".hydra" / "overrides.yaml"
    try:
        items = OmegaConf.to_container(OmegaConf.load(saved)) if saved.is_file() else None
    except Exception:  # noqa: BLE001 - a broken side file just means no fallback
        items = None
    if isinstance(items, list) and items:
        return parse_overrides(items)
    pieces = run_dir.name.split(",")
    return parse_overrides(pieces) if all("=" in p for p in pieces) else {}


def load_run(path: Path, root: Path) -> Run:
    """Read one summary.json; an unreadable file gives a run with status `corrupt` (and a warning)."""
    name = path.parent.relative_to(root).as_posix()
    try:
        return run_from_record(name, RunRecord.load(path), path)
    except (OSError, ValueError) as e:
        why = f"{type(e).__name__}: {e}"
        log.warning("skipped unreadable %s (%s)", path, why)
        return Run(
            name,
            Status.CORRUPT,
            overrides=fallback_overrides(path.parent),
            error=f"unreadable summary.json: {why}",
            path=path,
        )


def run_from_record(name: str, record: RunRecord, path: Path) -> Run:
    """The report's view of one run's record."""
    overrides = parse_overrides(record.overrides) or fallback_overrides(path.parent)
    config = record.config or {}
    given = "seed" in record.model_fields_set
    return Run(
        name=name,
        status=record.status,
        seed=record.seed if given else overrides.get("seed", config.get("seed")),
        overrides=overrides,
        swept=[bare(k) for k in record.swept] if record.swept is not None else None,
        choices=dict(record.choices),
        config=config,
        metrics=dict(record.metrics),
        history=list(record.history),
        diagnostics=record.diagnostics or {},
        steps=as_float(record.steps),
        epochs=as_float(record.epochs),
        wall_time_s=as_float(record.wall_time_s),
        diverged_at_step=as_float(record.diverged_at_step),
        error=record.error or None,
        path=path,
        git_commit=record.git_commit or None,
        versions=dict(record.versions),
        machine=record.machine or None,
        cpu_model=record.cpu_model or None,
        cpu_capability=record.cpu_capability or None,
        gpu_models=list(record.gpu_models or []),
        techniques=dict(record.techniques or {}),
    )


def acted(runs: Iterable[Run], technique: str) -> tuple[int, int]:
    """(runs where `technique` acted, runs that recorded it): e.g. max-norm acted in 0 of 7 runs.

    `technique` is a key of summary.json's "techniques", the `reg` field's name: max_norm, l1, l2,
    dropout, dropout2d, input_dropout, weight_decay, label_smoothing. Runs without an entry (the
    technique off, or a summary written before the entries existed) count in neither number.
    """
    entries = [
        r.techniques[technique] for r in runs if isinstance(r.techniques.get(technique), dict)
    ]
    return sum(e.get("acted") is True for e in entries), len(entries)

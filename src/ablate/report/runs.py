"""Loading runs: one summary.json -> one Run (status, overrides, config, metrics, history)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

REPORT_DIRNAME = "report"
MOVED_ASIDE = ".old-"  # resume=fresh: <run>.old-<time> (ablate.run.identity.move_aside)
STEPS = "steps_to_target"
TARGET_METRIC = "val/acc"


def _num(value: Any) -> float:
    """A float from a JSON number or a "nan"/"inf" string; nan for anything else."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value: Any) -> str:
    """How a config value reads in an override (true, null, 0.1)."""
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_overrides(items: Any) -> dict[str, str]:
    """`key=value` override strings -> {key: value as typed}, without +/~ prefixes and hydra.* keys."""
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            key = key.lstrip("+~")
            if not key.startswith("hydra."):
                out[key] = value
    return out


@dataclass
class Run:
    """One run of the sweep, as read from its summary.json."""

    name: str
    status: str
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
    steps_to_target: float | None = None  # None: no target set; nan: never reached
    path: Path | None = None  # the summary.json it was read from
    git_commit: str | None = None  # the commit the run was trained at ('-dirty': local changes)
    versions: dict[str, str] = field(default_factory=dict)  # python and package versions
    machine: str | None = None  # where it trained, e.g. "x86_64, 16 CPUs, 1 x NVIDIA H200"

    @property
    def completed(self) -> bool:
        return self.status == "completed"

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
        points = {}
        for entry in self.history:
            step, value = _num(entry.get("step")), _num(entry.get(key))
            if math.isfinite(step) and math.isfinite(value):
                points[step] = value
        steps = np.array(sorted(points), dtype=float)
        return steps, np.array([points[s] for s in steps], dtype=float)


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
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return _run_from_dict(name, data, path)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        why = f"{type(e).__name__}: {e}"
        log.warning("skipped unreadable %s (%s)", path, why)
        return Run(
            name,
            "corrupt",
            overrides=fallback_overrides(path.parent),
            error=f"unreadable summary.json: {why}",
            path=path,
        )


def _run_from_dict(name: str, data: dict[str, Any], path: Path) -> Run:
    overrides = parse_overrides(data.get("overrides")) or fallback_overrides(path.parent)
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    seed = data.get("seed", overrides.get("seed", config.get("seed")))
    swept = data.get("swept")
    return Run(
        name=name,
        status=str(data.get("status", "unknown")),
        seed=seed,
        overrides=overrides,
        swept=[str(k).lstrip("+~") for k in swept] if isinstance(swept, list) else None,
        choices=data.get("choices") if isinstance(data.get("choices"), dict) else {},
        config=config,
        metrics={str(k): _num(v) for k, v in (data.get("metrics") or {}).items()},
        history=[h for h in data.get("history") or [] if isinstance(h, dict)],
        diagnostics=data["diagnostics"] if isinstance(data.get("diagnostics"), dict) else {},
        steps=_num(data.get("steps")),
        epochs=_num(data.get("epochs")),
        wall_time_s=_num(data.get("wall_time_s")),
        diverged_at_step=_num(data.get("diverged_at_step")),
        error=str(data["error"]) if data.get("error") else None,
        path=path,
        git_commit=str(data["git_commit"]) if data.get("git_commit") else None,
        versions={str(k): str(v) for k, v in (data.get("versions") or {}).items()}
        if isinstance(data.get("versions"), dict)
        else {},
        machine=str(data["machine"]) if data.get("machine") else None,
    )

"""What a run directory already holds: skip finished runs, resume interrupted ones, refuse foreign ones."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

FINISHED = ("completed", "diverged")  # re-running these would only repeat the same result


def config_hash(cfg: DictConfig) -> str:
    """A short hash of the resolved config: the identity of a run."""
    text = json.dumps(OmegaConf.to_container(cfg, resolve=True), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Previous:
    """A run found in the directory before this one started."""

    summary: dict
    resume_from: Path | None  # last.ckpt of an interrupted run

    @property
    def finished(self) -> bool:
        return self.summary.get("status") in FINISHED


def read_summary(run_dir: str | Path) -> dict | None:
    """The run directory's summary.json, or None if there is none (or it cannot be read)."""
    path = Path(run_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("%s is unreadable; treating the run as interrupted", path)
        return {"status": "corrupt"}


def previous_run(run_dir: str | Path, cfg_hash: str) -> Previous | None:
    """The run already in run_dir if it is this config's; raises ValueError if it is another config's."""
    summary = read_summary(run_dir)
    if summary is None:
        return None
    if summary.get("config_hash") not in (cfg_hash, None) and summary.get("status") != "corrupt":
        raise ValueError(
            f"{run_dir} already holds a run of a different config: pick a new hydra.run.dir / "
            "hydra.sweep.dir, or move that run away"
        )
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    return Previous(summary, last if last.exists() else None)


def same_overrides_problems(run_dir: str | Path, overrides: list[str]) -> list[str]:
    """Refuse an explicit run dir holding a run launched with other overrides (checked before Hydra writes)."""
    summary = read_summary(run_dir)
    if summary is None or summary.get("status") == "corrupt":
        return []
    if sorted(summary.get("overrides", [])) == sorted(overrides):
        return []
    return [
        f"{run_dir} already holds a run with other overrides ({' '.join(summary.get('overrides', [])) or 'none'}): "
        "pick a new hydra.run.dir, or move that run away"
    ]

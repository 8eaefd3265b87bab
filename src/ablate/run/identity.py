"""What a run directory already holds: skip finished runs, resume interrupted ones, refuse foreign ones."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ablate.overrides import override_key
from ablate.run.lock import RUN_LOCK, secondary_rank
from ablate.run.record import FINISHED, RunRecord, Status

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "fresh")
# Keys that say how to start or watch a run, or where its files are, not what it computes.
NOT_IDENTITY = (
    "resume",
    "log_dir",
    "data.root",
    "data.cache_dir",
    "data.download",
    "data.num_workers",  # batches are seeded per (seed, epoch, rank, batch): workers change nothing
    "data.eval_batch_size",  # val/test scores do not depend on how the split is batched
    "logger",
    "callbacks.progress_bar",
    "study",  # the seed budget of ablate.study, not of a run
    "steps_per_call",  # the same weights bit for bit (tests/test_chunks.py); a resume keeps its own
    "group_seeds",  # a seed trained in a group is its solo run to float tolerance (tests/test_group.py)
)
# Groups added later whose default option sets nothing: earlier runs (without the group) keep
# their identity. eval=standard computes the weights' statistics, which change nothing either.
ABSENT_WHEN_EMPTY = ("eval",)
EXIT_IN_USE = 2
EXIT_SWEEP_FAILED = 1


def identity(config: Any) -> Any:
    """What determines a run's result: the resolved config without import paths, locations and views.

    Left out: `_target_`/`_partial_` (moving a module must not make earlier runs foreign), the keys
    in NOT_IDENTITY and every `dirpath` (where things are read or written, how progress is shown),
    and null values (a new switch that defaults to null leaves earlier runs' identity unchanged).
    """
    if isinstance(config, dict):
        return {
            k: identity(v)
            for k, v in config.items()
            if k not in ("_target_", "_partial_", "dirpath") and v is not None
        }
    if isinstance(config, list):
        return [identity(v) for v in config]
    return config


def _without(config: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if rest and isinstance(config.get(head), dict):
        _without(config[head], rest)
    elif not rest:
        config.pop(head, None)


def config_hash(cfg: DictConfig | dict) -> str:
    """A short hash of `identity` of the resolved config: the identity of a run."""
    resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    ident = identity(copy.deepcopy(resolved))
    for dotted in NOT_IDENTITY:
        _without(ident, dotted)
    for key in ABSENT_WHEN_EMPTY:
        if ident.get(key) == {}:
            ident.pop(key)
    text = json.dumps(ident, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recorded_hash(summary: RunRecord) -> str | None:
    """The identity of the run a summary.json records, recomputed from its config (any ablate version)."""
    return config_hash(summary.config) if summary.config is not None else summary.config_hash


@dataclass(frozen=True)
class Previous:
    """A run found in the directory before this one started."""

    summary: RunRecord
    resume_from: Path | None  # last.ckpt of an interrupted run

    @property
    def finished(self) -> bool:
        return self.summary.finished


def read_summary(run_dir: str | Path) -> RunRecord | None:
    """The run directory's summary.json; None if there is none, status `corrupt` if unreadable."""
    path = Path(run_dir) / "summary.json"
    try:
        return RunRecord.load(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        log.warning("%s is unreadable; treating the run as interrupted", path)
        return RunRecord(status=Status.CORRUPT)


def previous_run(run_dir: str | Path, cfg_hash: str, resume: str = "auto") -> Previous | None:
    """The run already in run_dir if it is this config's; ValueError if another's or its checkpoint is damaged.

    resume=fresh first moves whatever an earlier run left in run_dir aside (see move_aside).
    """
    if resume not in RESUME_MODES:
        raise ValueError(f"resume={resume} is not allowed: one of {list(RESUME_MODES)}")
    if resume == "fresh":
        if not secondary_rank():  # rank 0 moved it before it started the other ranks
            move_aside(run_dir)
        return None
    summary = read_summary(run_dir)
    if summary is None:
        return None
    if recorded_hash(summary) not in (cfg_hash, None) and summary.status != Status.CORRUPT:
        if summary.status == Status.FAILED:  # nothing of value to keep: re-run it in place
            log.warning("%s: re-running a failed run with a changed config from the start", run_dir)
            shutil.rmtree(Path(run_dir) / "checkpoints", ignore_errors=True)
            return Previous(summary, None)
        raise ValueError(
            f"{run_dir} already holds a run of a different config: pick a new hydra.run.dir / "
            "hydra.sweep.dir, or move that run away"
        )
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not last.exists() or summary.status in FINISHED:
        return Previous(summary, None)
    if problem := checkpoint_problem(last):
        raise ValueError(
            f"{last} is damaged ({problem}) and cannot be resumed from: re-run with resume=fresh to "
            f"move this run to {Path(run_dir).name}.old-<time>/ and start over"
        )
    return Previous(summary, last)


def checkpoint_problem(path: Path) -> str | None:
    """Why a torch.save'd checkpoint (a zip archive) is unusable, or None: truncation, bad CRCs."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()  # reads every member and checks its CRC
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"{type(e).__name__}: {e}"
    return f"bad CRC in {bad}" if bad else None


# Written by Hydra for the current job and held open by it: copied aside, left in place.
_CURRENT_JOB = (".hydra", "train.log", RUN_LOCK)


def move_aside(run_dir: str | Path) -> Path | None:
    """Move an earlier run's files from run_dir into a new sibling `<run_dir>.old-<time>`; deletes nothing."""
    run_dir = Path(run_dir)
    earlier = (
        [p for p in run_dir.iterdir() if p.name not in _CURRENT_JOB] if run_dir.is_dir() else []
    )
    if not earlier:
        return None
    aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    while aside.exists():  # two restarts in one second
        aside = aside.with_name(aside.name + "_")
    aside.mkdir()
    for p in earlier:
        p.rename(aside / p.name)
    for name in (".hydra", "train.log"):  # already rewritten/appended by this job: keep a copy
        src = run_dir / name
        if src.is_dir():
            shutil.copytree(src, aside / name)
        elif src.is_file():
            shutil.copy2(src, aside / name)
    log.warning("resume=fresh: moved the earlier run in %s to %s", run_dir, aside)
    return aside


def same_overrides_problems(run_dir: str | Path, overrides: list[str]) -> list[str]:
    """Refuse an explicit run dir holding a run launched with other overrides (checked before Hydra writes)."""
    summary = read_summary(run_dir)
    if summary is None or summary.status == Status.CORRUPT:
        return []
    identity = lambda ovs: sorted(o for o in ovs if override_key(o) not in NOT_IDENTITY)  # noqa: E731
    if identity(summary.overrides) == identity(overrides):
        return []
    return [
        f"{run_dir} already holds a run with other overrides ({' '.join(summary.overrides) or 'none'}): "
        "pick a new hydra.run.dir, or move that run away"
    ]

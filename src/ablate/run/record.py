"""The typed record of a run's summary.json: what run/summary.py writes and every reader reads
(identity and resume, sweep progress, the report, the study, the scripts).

Unknown keys load and are written back unchanged (a newer or older ablate may write others), and
every key is optional, so summary.json files of earlier versions keep loading.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from ablate.overrides import as_float


class Status(StrEnum):
    """Where a run stands; its value is what summary.json holds."""

    RUNNING = "running"  # started, no outcome yet (or killed before it could record one)
    COMPLETED = "completed"
    DIVERGED = "diverged"  # stopped by max_loss: a result, not a crash; not tested
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # SIGTERM after last.ckpt was saved: the same command resumes
    CORRUPT = "corrupt"  # never written: what a reader makes of an unreadable summary.json


FINISHED = (Status.COMPLETED, Status.DIVERGED)  # re-running these would only repeat the result
UNKNOWN = "unknown"  # the status of a summary.json that records none
TARGET_METRIC = "val/acc"  # what steps_to_target measures
NOT_A_SCORE = ("step", "epoch")  # history keys kept as written (integers), not as metric values

AnyStatus = Annotated[Status | str, Field(union_mode="left_to_right")]  # a newer version's too


def _score(value: Any) -> float:
    return as_float(value.item() if hasattr(value, "item") else value)


def _json_number(value: Any) -> Any:
    """JSON has no NaN or infinity: those are written as the strings "nan", "inf", "-inf"."""
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


class Attempt(BaseModel):
    """What an earlier, unfinished attempt in the same run directory recorded."""

    model_config = ConfigDict(extra="allow")

    status: AnyStatus = UNKNOWN
    started_at: str | None = None
    wall_time_s: float | None = None
    error: str | None = None
    traceback: str | None = None
    hint: str | None = None
    interrupted_at_step: int | None = None


class RunRecord(BaseModel):
    """summary.json: what a run was (config, seed, versions, commit) and what came out of it."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    status: AnyStatus = UNKNOWN
    seed: int | str | None = None  # as the config gave it (a refused config's too)
    overrides: list[str] = Field(default_factory=list)  # as typed on the command line
    swept: list[str] | None = None  # the keys the sweep varied (None: not recorded)
    choices: dict[str, str | None] = Field(default_factory=dict)  # config group -> option
    config_hash: str | None = None
    config: dict[str, Any] | None = None  # the resolved config
    versions: dict[str, str] = Field(default_factory=dict)  # python and package versions
    git_commit: str | None = None  # '-dirty': code or configs had local changes
    machine: str | None = None  # e.g. "x86_64, 16 CPUs (AMD EPYC 9654), 1 x NVIDIA H200"
    cpu_model: str | None = None  # /proc/cpuinfo's "model name", e.g. "AMD EPYC 9654"
    cpu_capability: str | None = None  # torch's CPU kernels, e.g. "AVX2", "AVX512"
    gpu_models: list[str] | None = None  # one name per CUDA device the run saw (None: none used)
    started_at: str | None = None
    earlier_attempts: list[Attempt] = Field(default_factory=list)
    wall_time_s: float | None = None
    interrupted_at_step: int | None = None
    steps: int | None = None
    epochs: int | None = None
    splits: dict[str, int] | None = None  # images per split
    best_checkpoint: str | None = None
    diverged_at_step: int | None = None
    threads: int | None = None
    diagnostics: dict[str, Any] | None = None  # e.g. {"landscape": [probe, ...]}
    # per regularizer that was on, what it did and whether it acted: e.g. {"max_norm":
    # {"projections": 0, "steps": 120, "acted": false}, "l2": {"loss_share": 0.03, "acted": true}}
    techniques: dict[str, dict[str, Any]] | None = None
    data_path: str | None = None
    error: str | None = None
    traceback: str | None = None
    hint: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)  # final metrics
    history: list[dict[str, float]] = Field(default_factory=list)  # one entry per validation

    @field_validator("metrics", mode="plain")
    @classmethod
    def _metrics(cls, value: Any) -> dict[str, float]:
        return {str(k): _score(v) for k, v in dict(value or {}).items()}

    @field_validator("history", mode="plain")
    @classmethod
    def _history(cls, value: Any) -> list[dict[str, Any]]:
        return [
            {str(k): v if k in NOT_A_SCORE else _score(v) for k, v in entry.items()}
            for entry in value or []
            if isinstance(entry, Mapping)
        ]

    @field_serializer("metrics")
    def _dump_metrics(self, metrics: dict[str, float]) -> dict[str, Any]:
        return {k: _json_number(v) for k, v in metrics.items()}

    @field_serializer("history")
    def _dump_history(self, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: _json_number(v) for k, v in entry.items()} for entry in history]

    @property
    def finished(self) -> bool:
        """Completed or diverged: a result that re-running would only repeat."""
        return self.status in FINISHED

    def attempt(self) -> Attempt:
        """This record as an earlier attempt of a re-run in the same directory."""
        return Attempt.model_validate(self.to_dict(include=set(Attempt.model_fields)))

    def to_dict(self, include: set[str] | None = None) -> dict[str, Any]:
        """The keys summary.json holds (those set, unknown ones included), as written."""
        return self.model_dump(include=include, exclude_unset=True)

    def to_json(self) -> str:
        """The text of summary.json."""
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def load(cls, path: str | Path) -> RunRecord:
        """Read a summary.json; OSError if it cannot be read, ValueError if it is not a record."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return cls.model_validate(data)


def curve(history: Iterable[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    """(step, value) of a history metric by step: finite points only, the last entry at a step."""
    points: dict[float, float] = {}
    for entry in history:
        step, value = as_float(entry.get("step")), as_float(entry.get(key))
        if math.isfinite(step) and math.isfinite(value):
            points[step] = value
    return sorted(points.items())


def steps_to_target(
    history: Iterable[Mapping[str, Any]], target: float, metric: str = TARGET_METRIC
) -> float | None:
    """First validation step whose `metric` (val/acc) is >= target; None: never reached."""
    return next((step for step, value in curve(history, metric) if value >= target), None)

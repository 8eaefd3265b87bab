"""Where the configs live and the OmegaConf resolvers they use: folder names derived from the command
(`${run_name:...}`, `${sweep_name:...}`, `${sweep_dir_name:}`, `${preset_dir:...}`), `${repo_root:}`,
`${default_data_root:}`, `${on_gpu:...}`, `${auto_precision:...}`, `${linear_scaling:...}`."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from ablate.overrides import bare, override_key

PACKAGE_DIR = Path(__file__).resolve().parent
# An editable install runs from the checkout: <repo>/src/ablate. Otherwise fall back to the cwd.
_CHECKOUT = PACKAGE_DIR.parents[1]
REPO_ROOT = _CHECKOUT if (_CHECKOUT / "pyproject.toml").exists() else Path.cwd()
CONF_DIR = REPO_ROOT / "conf"

# Overrides that say where things are or how a run is watched, not what was run: left out of run
# and sweep folder names (and of the run identity, ablate.run.identity.NOT_IDENTITY).
_NOT_IN_NAME = (
    "hydra",
    "data.root",
    "data.cache_dir",
    "data.num_workers",
    "log_dir",
    "resume",
    "callbacks.progress_bar",
    "logger",
    "study",
)
COMMAND_ENV = "ABLATE_COMMAND"  # the command line's overrides, set by the CLI for launcher workers


SWEPT_ENV = "ABLATE_SWEPT"  # set by the CLI, so launcher workers (joblib, submitit) know it too


def cli_swept_keys(argv: list[str]) -> set[str]:
    """Keys the command line sweeps (a,b / range() / glob())."""
    try:
        parsed = OverridesParser.create().parse_overrides(
            [a for a in argv if "=" in a and not a.startswith("-")]
        )
    except Exception:  # noqa: BLE001 - not a Hydra command line: nothing swept
        return set()
    return {override_key(o.input_line) for o in parsed if o.is_sweep_override()}


def swept_keys(sweeper_params: dict | None = None) -> set[str]:
    """Keys a multirun varies: sweep syntax on the command line and hydra.sweeper.params."""
    env = os.environ.get(SWEPT_ENV)
    keys = set(filter(None, env.split(","))) if env is not None else cli_swept_keys(sys.argv[1:])
    return keys | {override_key(k) for k in (sweeper_params or {})}


def run_name(overrides: list[str] | None, _root_: DictConfig | None = None) -> str:
    """A directory/TensorBoard name from the command-line overrides, sorted, seed last."""
    return _join([bare(o) for o in overrides or [] if _named(o)])


def sweep_name(overrides: list[str] | None, _root_: DictConfig | None = None) -> str:
    """A multirun job's name: only the overrides the sweep varies (all of them if none vary)."""
    swept = swept_keys(
        OmegaConf.select(_root_, "hydra.sweeper.params", default=None) if _root_ else None
    )
    items = [bare(o) for o in overrides or [] if override_key(o) in swept]
    return _join(items) if items else run_name(overrides)


def command_overrides() -> list[str]:
    """The overrides the command line gave (as typed), without flags; from the CLI's environment."""
    env = os.environ.get(COMMAND_ENV)
    argv = json.loads(env) if env else sys.argv[1:]
    return [a for a in argv if "=" in a and not a.startswith("-")]


def _named(override: str) -> bool:
    return not bare(override).startswith(_NOT_IN_NAME)


def sweep_dir_name(overrides: list[str] | None = None, _root_: DictConfig | None = None) -> str:
    """An ad-hoc sweep's folder: its command-line overrides, sweep syntax included (no clock), so the
    same command finds the same sweep (finished cells skipped, interrupted ones resumed)."""
    items = [bare(o) for o in command_overrides() if _named(o)]
    return _join(items, sep="+") if items else "default"


def preset_dir(name: str, _root_: DictConfig | None = None) -> str:
    """A preset's sweep folder: `name`, or `name+<overrides>` when the command changes what the preset
    fixes. Overrides of the keys the preset sweeps (e.g. seed=3,4) pick cells of the same study."""
    params = OmegaConf.select(_root_, "hydra.sweeper.params", default=None) if _root_ else None
    swept = {override_key(k) for k in (params or {})}
    extra = [
        bare(o)
        for o in command_overrides()
        if _named(o) and override_key(o) not in swept and override_key(o) != "experiment"
    ]
    return f"{name}+{_join(extra)}" if extra else name


def _join(items: list[str], sep: str = ",") -> str:
    items.sort(key=lambda o: (o.split("=", 1)[0] == "seed", o))
    name = sep.join(items).replace("/", "_").replace(" ", "") or "default"
    if len(name) > 180:  # keep under common filesystem limits (255 bytes), unique by hash
        name = f"{name[:160]}...{hashlib.sha1(name.encode()).hexdigest()[:10]}"
    return name


def default_data_root() -> str:
    """Where the datasets are when neither DATA_DIR nor data.root says: ../shared/data beside the
    checkout when it holds them (offline machines), else <repo>/data (downloads land there)."""
    shared = REPO_ROOT.parent / "shared" / "data"
    return str(shared if (shared / "MNIST" / "raw").is_dir() else REPO_ROOT / "data")


def linear_scaling(base: float, batch_size: int, base_batch_size: int) -> float:
    """Learning rate scaled linearly with the batch size (Goyal et al. 2017): base * batch / base_batch."""
    return float(base) * int(batch_size) / int(base_batch_size)


def on_gpu(accelerator: str) -> bool:
    """Whether `trainer.accelerator` means a CUDA GPU on this machine (`auto`: when one is visible)."""
    import torch

    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def per_device(accelerator: str, gpu: int, cpu: int) -> int:
    """`gpu` on a GPU, else `cpu`: e.g. the eval batch (on 2 CPU cores the default CNN scores 5,700
    images/s at batch 128 and 3,300 at batch 1,000; on a GPU bigger batches are nearly free)."""
    return gpu if on_gpu(accelerator) else cpu


def auto_precision(accelerator: str) -> str:
    """bf16-mixed on a GPU that has bfloat16 (Ampere and later), else 32-true (CPU: no gain)."""
    import torch

    if on_gpu(accelerator) and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _repo_root() -> str:
    return str(REPO_ROOT)


RESOLVERS = {
    f.__name__.lstrip("_"): f
    for f in (
        _repo_root, run_name, sweep_name, sweep_dir_name, preset_dir, default_data_root,
        linear_scaling, on_gpu, per_device, auto_precision,
    )
}  # fmt: skip


def register_resolvers() -> None:
    """Register the project's resolvers once (idempotent)."""
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()

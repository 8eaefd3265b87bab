"""Build what a run builds, cheaply, so that what a constructor refuses is refused before any write.

Each object is built as train.py builds it, with stand-ins for what needs data: the norm, the
regularizers and the init (on a dummy weight); the optimizer over one dummy parameter and the
scheduler on it; the datamodule (its augmentation pipelines; no data is read); the network for the
data node's shape, with one forward pass of blank images; the Trainer, without loggers or callbacks.
Then what they could not hold: the datamodule's known counts (a batch larger than the training
split), and this machine's devices, cores and memory (ablate.limits).
Whatever a constructor raises (ValueError, TypeError, Lightning's MisconfigurationException, ...)
becomes one line naming the option: `optim=adam cannot be built: Invalid beta parameter ...`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ablate.limits import hardware_problems, image_bytes, interval_problems, memory_problems
from ablate.models import build_model


def _message(e: BaseException) -> str:
    cause = e.__cause__ if isinstance(e, InstantiationException) and e.__cause__ else e
    text = " ".join(str(cause).split())
    return (
        text
        if isinstance(cause, ValueError | TypeError) and text
        else f"{type(cause).__name__}: {text}"
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No warnings or log lines from building (Lightning reports devices when a Trainer is built),
    no draws from the global RNG, and torch's global switches as they were."""
    disabled = logging.root.manager.disable
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags


class _Builder:
    """Builds one object after another; a failure is one line, and what depends on it is skipped."""

    def __init__(self, choices: Mapping[str, str | None]) -> None:
        self.choices, self.problems = choices, []

    def __call__(self, group: str, build: Callable[[], Any], what: str = "") -> Any:
        try:
            return build()
        except Exception as e:  # noqa: BLE001 - any refusal means this config cannot train
            option = f"{group}={self.choices[group]}" if self.choices.get(group) else group
            self.problems.append(f"{option} cannot be built{what}: {_message(e)}")
            return None


def _net(cfg: DictConfig) -> torch.nn.Module:
    """The network for the data node's shape (not compiled: that happens at its first step)."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model["compile"] = False
    net = build_model(
        OmegaConf.create(model), cfg.norm, cfg.reg, cfg.init, in_channels=cfg.data.channels,
        num_classes=cfg.data.num_classes, image_size=tuple(cfg.data.image_size),
    )  # fmt: skip
    with torch.no_grad():
        net.eval()(torch.zeros(2, cfg.data.channels, *cfg.data.image_size))
    return net


def _trainer(cfg: DictConfig) -> Any:
    return instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)


def construction_problems(
    cfg: DictConfig, choices: Mapping[str, str | None] | None = None, *, trainer: bool = True
) -> list[str]:
    """What the constructors of a run refuse, one line each (empty when everything builds)."""
    build = _Builder(choices or {})
    with _quiet():
        norm = build("norm", lambda: instantiate(cfg.norm))
        reg = build("reg", lambda: instantiate(cfg.reg)) if "_target_" in cfg.reg else True
        activation = cfg.model.get("activation", "relu")
        init = build("init", lambda: _init(cfg, activation))
        weight = torch.nn.Parameter(torch.zeros(1))
        optimizer = build("optim", lambda: instantiate(cfg.optim)(params=[weight]))
        if optimizer is not None and cfg.scheduler:
            build(
                "scheduler",
                lambda: instantiate(cfg.scheduler)(optimizer=optimizer, total_steps=100),
            )
        aug = OmegaConf.to_container(cfg.aug, resolve=True)
        seed = cfg.get("seed") or 0
        data = build("data", lambda: instantiate(cfg.data, aug=aug, seed=seed, _recursive_=False))
        net = None
        if norm is not None and reg is not None and init is not None:
            c, (h, w) = cfg.data.channels, cfg.data.image_size
            what = f" for {c}x{h}x{w} images (data={build.choices.get('data') or 'its data'})"
            net = build("model", lambda: _net(cfg), what)
        if trainer:  # the machine the run trains on is this one
            build.problems += hardware_problems(cfg)
            if not build.problems:
                build("trainer", lambda: _trainer(cfg))
        if data is not None and not build.problems:  # the data's known counts
            build.problems += data.size_problems() or interval_problems(cfg, data.train_images())
        if trainer and net is not None and not build.problems:
            model = f"model={build.choices.get('model') or 'the model'}"
            shape = (cfg.data.channels, *cfg.data.image_size)
            build.problems += memory_problems(cfg, image_bytes(net, shape), model)
    return build.problems


def _init(cfg: DictConfig, activation: str) -> bool:
    init_fn = instantiate(cfg.init)
    if init_fn is not None:
        init_fn(torch.empty(8, 4, 3, 3), activation)
    return True

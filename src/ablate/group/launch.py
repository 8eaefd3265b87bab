"""Grouping a sweep's jobs: those that differ only in `seed` train as one stacked model of up to
`group_seeds` seeds; every other job runs as the basic launcher runs it."""

from __future__ import annotations

import copy
import dataclasses
import logging
import multiprocessing
import os
import pickle
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from ablate.config import swept_keys
from ablate.group.seeds import Member
from ablate.group.steps import blockers
from ablate.run.forked import die_with_parent
from ablate.run.identity import config_hash, previous_run, read_summary
from ablate.run.lock import run_lock
from ablate.run.parallel_stop import end_if_stopped, launcher_waiting, run_stoppable, worker_start
from ablate.run.threads import at_once
from ablate.validate import config_problems

log = logging.getLogger(__name__)


def cell_key(overrides: Sequence[str]) -> tuple[str, ...]:
    """A job's overrides without its seed: jobs with equal keys are one cell's seeds."""
    return tuple(sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") != "seed"))


def _job_config(launcher: Any, overrides: Sequence[str], idx: int) -> DictConfig:
    cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(cfg):
        cfg.hydra.job.id = idx
        cfg.hydra.job.num = idx
    return cfg


def as_job(sweep_config: DictConfig) -> DictConfig:
    """The job's config with its run directory set, made Hydra's current one (as run_job does)."""
    config = copy.deepcopy(sweep_config)
    HydraConfig.instance().set_config(config)
    run_dir = os.path.join(str(OmegaConf.select(config, "hydra.sweep.dir")),
                           str(OmegaConf.select(config, "hydra.sweep.subdir")))  # fmt: skip
    with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
        config.hydra.runtime.output_dir = os.path.abspath(run_dir)
    HydraConfig.instance().set_config(config)
    return config


def member(sweep_config: DictConfig) -> tuple[Member | None, str]:
    """The job as a group member, or (None, why it runs solo): what run_job would hand train()."""
    config = as_job(sweep_config)
    hc = HydraConfig.get()
    cfg = copy.deepcopy(config)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    if not isinstance(cfg.get("seed"), int):
        return None, "seed=null (drawn per run)"
    if config_problems(cfg, dict(hc.runtime.choices), hc.runtime.output_dir):
        return None, "config problems (reported by the run)"
    if not getattr(get_class(cfg.model._target_), "stackable", False):
        return None, f"{cfg.model._target_} has no stacked layers (model=mlp has)"
    if cfg.model.get("input_bn"):
        return None, "model.input_bn=true (a BatchNorm over the pixels has no stacked version)"
    if cfg.model.get("compile"):
        return None, "model.compile=true (a compiled net is not stacked)"
    plain = lambda key: OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) else {}  # noqa: E731
    if found := blockers(
        plain("trainer"), plain("callbacks"), plain("diagnostics"), plain("logger")
    ):
        return None, "; ".join(found)
    # Resolved now, while Hydra's config is this job's: ${hydra:runtime.output_dir} is its run dir.
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg_hash = config_hash(cfg)
    try:
        previous = previous_run(hc.runtime.output_dir, cfg_hash, resume="auto")
    except ValueError as e:
        return None, str(e)
    if previous and (previous.finished or previous.resume_from):
        return None, "finished" if previous.finished else "a solo run to resume"
    if cfg.get("resume") == "fresh":
        return None, "resume=fresh"
    return Member(
        cfg,
        hc.runtime.output_dir,
        cfg_hash,
        int(cfg.seed),
        list(hc.overrides.task),
        sorted(swept_keys(hc.sweeper.get("params"))),
        dict(hc.runtime.choices),
    ), ""


def _recorded(cfg: DictConfig) -> float:
    """The task of a job its group trained: its summary's best validation accuracy."""
    summary = read_summary(HydraConfig.get().runtime.output_dir)
    group = getattr(summary, "group", None) if summary else None
    log.info("%s: %s, trained in a group of %s", HydraConfig.get().runtime.output_dir,
             summary.status if summary else "no summary", (group or {}).get("size"))  # fmt: skip
    return (summary.metrics if summary else {}).get("val/acc_best", 0.0)


Job = tuple[int, Sequence[str], DictConfig]  # (job number, its overrides, its sweep config)


def _plan(
    launcher: Any, job_overrides: Sequence[Sequence[str]], first: int
) -> list[list[tuple[Job, Member | None]]]:
    """The sweep as units in order: groups of up to group_seeds members of one cell (its jobs that
    can train together, wherever they stand in the sweep's order), and single jobs run as solo."""
    units: list[list[tuple[Job, Member | None]]] = []
    open_units: dict[tuple[str, ...], list[tuple[Job, Member | None]]] = {}
    for idx, overrides in enumerate(job_overrides, start=first):
        cfg = _job_config(launcher, overrides, idx)
        size = cfg.get("group_seeds") or 1
        found, why = member(cfg) if size > 1 else (None, "")
        if found is None:
            if why and why != "finished":
                log.info("job #%d runs on its own: %s", idx, why)
            units.append([((idx, overrides, cfg), None)])
            continue
        key = cell_key(overrides)
        unit = open_units.get(key)
        if unit is None or len(unit) >= size:
            unit = open_units[key] = []
            units.append(unit)
        unit.append(((idx, overrides, cfg), found))
    return units


def launch_grouped(
    launcher: Any, job_overrides: Sequence[Sequence[str]], first: int, n_jobs: int = 1
) -> list[JobReturn]:
    """Run the jobs; the seeds of a cell train as one group, then each job reports its own run.

    With n_jobs > 1 the units (groups and solo jobs) run n_jobs at a time, each in a worker process
    (forked from this one where no GPU is visible), threads split between them (ablate.run.threads).
    """
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    os.makedirs(str(launcher.config.hydra.sweep.dir), exist_ok=True)
    log.info(f"Launching {len(job_overrides)} jobs locally")
    units = _plan(launcher, job_overrides, first)
    where = _Where(launcher.hydra_context, launcher.config, launcher.task_function)
    if n_jobs == 1 or len(units) < 2:
        runs = [_run_unit(where, unit) for unit in units]
    else:
        import cloudpickle  # Hydra's configs hold classes that plain pickle cannot name

        log.info("%d units (groups and solo jobs), %d at a time", len(units), n_jobs)
        workers = min(len(units), at_once(n_jobs))
        state = Singleton.get_state()
        payloads = [cloudpickle.dumps((state, where, unit)) for unit in units]
        # each worker gets SIGTERM when the launcher's process ends (a kill -9 too): no worker
        # outlives its sweep; its group stops after its step, saved, as on its own SIGTERM
        # (a terminal's Ctrl-C reaches every worker: ablate.run.parallel_stop)
        pool = ProcessPoolExecutor(workers, mp_context=_worker_context(),
                                   initializer=_worker_start, initargs=(os.getpid(),))  # fmt: skip
        try:
            with launcher_waiting(), pool:
                runs = [pickle.loads(r) for r in pool.map(_unit_in_worker, payloads)]
        except BrokenProcessPool:  # a worker ended: SIGTERM (saved), kill -9, out of memory
            from ablate.run.checkpoint import EXIT_INTERRUPTED

            log.warning("a worker was stopped: run the same command to resume")
            raise SystemExit(EXIT_INTERRUPTED) from None
        end_if_stopped(runs)
    done = {idx: ret for found in runs for idx, ret in found.items()}
    return [done[i] for i in sorted(done)]  # in the sweep's order


@dataclasses.dataclass(frozen=True)
class _Where:
    """What running a job needs from the launcher (picklable, for the worker processes)."""

    hydra_context: Any
    config: DictConfig
    task_function: Any


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from this process start with torch, Lightning and Hydra imported (~6 s a
    worker); where CUDA is visible they start fresh, as CUDA cannot be used after a fork.
    $ABLATE_WORKER_START (fork or spawn) chooses, e.g. for a library that is not fork-safe."""
    import torch

    method = os.environ.get("ABLATE_WORKER_START") or (
        "spawn" if torch.cuda.is_available() else "fork"
    )
    return multiprocessing.get_context(method)


def _worker_start(launcher: int) -> None:
    """A worker's initializer: it ends with the launcher, and notes a Ctrl-C between units."""
    die_with_parent(launcher)
    worker_start()


def _unit_in_worker(payload: bytes) -> bytes:
    """_run_unit in a worker process, with Hydra's global state as the launcher had it; a unit that
    Ctrl-C stopped (saved), or that came after one, is handed back as Stopped."""
    import cloudpickle

    state, where, unit = pickle.loads(payload)
    setup_globals()
    Singleton.set_state(state)
    try:
        return cloudpickle.dumps(run_stoppable(_run_unit, where, unit))
    except SystemExit:
        # SIGTERM (a killed launcher's workers get it): the unit saved; nobody waits for a value
        from ablate.run.checkpoint import EXIT_INTERRUPTED

        logging.shutdown()
        os._exit(EXIT_INTERRUPTED)


def _run_unit(where: _Where, unit: list[tuple[Job, Member | None]]) -> dict[int, JobReturn]:
    """One unit: a group trains its members together, then every job runs (a member only reports)."""
    members = [m for _, m in unit if m is not None]
    if len(members) > 1:
        lead = as_job(next(job[2] for job, m in unit if m is not None))
        os.makedirs(lead.hydra.runtime.output_dir, exist_ok=True)
        configure_log(lead.hydra.job_logging, lead.hydra.verbose)  # into its train.log
        try:
            _train_group(members)
        except Exception:  # each run then trains on its own, as without group_seeds
            log.exception("this group failed; its runs train one by one instead")
            unit = [(job, None) for job, _ in unit]
            members = []
    runs: dict[int, JobReturn] = {}
    for (idx, overrides, cfg), m in unit:
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        task = _recorded if m is not None and len(members) > 1 else where.task_function
        runs[idx] = run_job(hydra_context=where.hydra_context, task_function=task, config=cfg,
                            job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")  # fmt: skip
        configure_log(where.config.hydra.hydra_logging, where.config.hydra.verbose)
    return runs


def _train_group(members: list[Member]) -> None:
    """Train the members as one stacked model, each run directory locked as its solo run locks it."""
    from ablate.group.fit import train_group  # Lightning and torch: only for a group that trains

    with ExitStack() as held:
        for m in members:
            held.enter_context(run_lock(m.run_dir))
        log.info("training %d seeds (%s) as one stacked model", len(members),
                 ", ".join(str(m.seed) for m in members))  # fmt: skip
        train_group(members)

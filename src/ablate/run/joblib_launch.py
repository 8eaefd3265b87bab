"""hydra/launcher=joblib with Ctrl-C as a single run has it: every running run stops after its
batch, saves and is recorded `interrupted`, then the sweep ends with one line; the same command resumes.

Under Hydra's own joblib launcher the launcher's KeyboardInterrupt makes joblib kill its workers at
once, and so does the first worker whose run ends by Ctrl-C (its KeyboardInterrupt is sent back): a
run still saving was killed and left `running`. Here loky's workers and the launcher handle the
signal as ablate.run.parallel_stop says.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals

from ablate.run.parallel_stop import (
    Stopped,
    end_if_stopped,
    launcher_waiting,
    run_stoppable,
    worker_start,
)

log = logging.getLogger(__name__)


def run_job(idx: int, *args: Any) -> JobReturn | Stopped:
    """Hydra's execute_job, with a run that Ctrl-C stopped handed back as Stopped."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    return run_stoppable(execute_job, idx, *args)


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], first: int) -> list[JobReturn]:
    """Hydra's joblib launch (hydra_joblib_launcher._core.launch, which hard-wires its job function
    and backend), with loky workers that note Ctrl-C and a first Ctrl-C waiting for the runs to save."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed
    from joblib._parallel_backends import LokyBackend

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(launcher.joblib)
    process_joblib_cfg(cfg)
    cfg["backend"] = LokyBackend(initializer=worker_start)
    log.info(f"Joblib.Parallel(n_jobs={cfg.get('n_jobs')}) is launching {len(job_overrides)} jobs")
    log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
    for idx, overrides in enumerate(job_overrides):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
    state = Singleton.get_state()
    where = (launcher.hydra_context, launcher.config, launcher.task_function, state)
    with launcher_waiting():
        jobs = (
            delayed(run_job)(first + i, overrides, *where)
            for i, overrides in enumerate(job_overrides)
        )
        runs = Parallel(**cfg)(jobs)
    end_if_stopped(runs)
    return list(runs)

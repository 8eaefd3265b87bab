"""hydra/launcher=grouped (conf/hydra/launcher/grouped.yaml): the basic launcher, with the seeds of
one cell trained as one stacked model when `group_seeds` > 1 (the work is in ablate.group.launch).

Hydra loads launchers only from the hydra_plugins package; this module is the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class GroupedLauncher(BasicLauncher):
    """Runs a sweep's jobs, n_jobs units at a time; jobs that differ only in `seed` train together."""

    def __init__(self, n_jobs: int = 1) -> None:
        super().__init__()
        self.n_jobs = n_jobs

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from ablate.composed import compose_once

        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        compose_once(hydra_context.config_loader)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from ablate.group.launch import launch_grouped

        return launch_grouped(self, job_overrides, initial_job_idx, self.n_jobs)

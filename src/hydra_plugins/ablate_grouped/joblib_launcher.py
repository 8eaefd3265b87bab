"""hydra/launcher=joblib (conf/hydra/launcher/joblib.yaml): Hydra's joblib launcher, with Ctrl-C
stopping every running run at its batch, saved and recorded (the work is in ablate.run.joblib_launch).

Hydra loads launchers only from the hydra_plugins package; this module is the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher


class StoppableJoblibLauncher(JoblibLauncher):
    """Joblib's parallel runs (loky workers); the first Ctrl-C lets each running run save first."""

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from ablate.run.joblib_launch import launch

        return launch(self, job_overrides, initial_job_idx)

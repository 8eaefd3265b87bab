"""Loading: each summary.json -> a Run (runs), multirun.yaml -> the sweep's Plan (plan), the runs
-> a Sweep of cells (sweep), a study's study.json -> its StudyPlan and looks (study), the open
choices a preset declares -> its setups (setups).

The bottom layer: imports nothing from judge/ or render/.
"""

from ablate.report.load.plan import Plan, load_plan, plan_from_specs, sweep_values
from ablate.report.load.runs import (
    MOVED_ASIDE,
    REPORT_DIRNAME,
    STEPS,
    Run,
    acted,
    find_summaries,
    load_run,
    run_from_record,
)
from ablate.report.load.setups import open_problems, with_setup, without_setup
from ablate.report.load.study import (
    STUDY_FILE,
    StudyPlan,
    load_study,
    study_looks,
    study_plan,
    use_study_plan,
)
from ablate.report.load.sweep import ReportError, Sweep, load_sweep, order_levels, step_budget

__all__ = [
    "MOVED_ASIDE", "REPORT_DIRNAME", "STEPS", "STUDY_FILE", "Plan", "ReportError", "Run",
    "StudyPlan", "Sweep", "acted", "find_summaries", "load_plan", "load_run", "load_study", "load_sweep",
    "open_problems", "order_levels", "plan_from_specs", "run_from_record", "step_budget",
    "study_looks", "study_plan", "sweep_values", "use_study_plan", "with_setup", "without_setup",
]  # fmt: skip

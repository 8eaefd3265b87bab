"""Run bookkeeping: identity and resume, the run-directory lock, summary.json, checkpoints,
preemption, the sweep guard, loggers and callbacks, and CPU threads."""

"""`python -m ablate.report SWEEP_DIR`."""

from ablate.report.cli import main
from ablate.run.fast_exit import run_as_program

if __name__ == "__main__":
    run_as_program(main)

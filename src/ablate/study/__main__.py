"""`python -m ablate.study`."""

from ablate.run.fast_exit import run_as_program
from ablate.study import main

run_as_program(main, ctrl_c="interrupted; the same command continues where it stopped")

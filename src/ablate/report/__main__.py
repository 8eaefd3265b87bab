"""`python -m ablate.report SWEEP_DIR`."""

import sys

from ablate.report.cli import main

if __name__ == "__main__":
    sys.exit(main())

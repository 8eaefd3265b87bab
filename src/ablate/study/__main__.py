"""`python -m ablate.study`."""

import sys

from ablate.study import main

sys.exit(main())

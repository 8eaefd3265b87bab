"""The entry points' own flags (ablate.study, ablate.report): argparse, with a bad flag as one line."""

from __future__ import annotations

import argparse
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose error is one line and exit code 2 (the usage block stays with --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

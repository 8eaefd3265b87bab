"""`python -m ablate.train` (or a benchmark script) run as subprocess.run would, in a process forked
from a server that has already imported torch, Lightning and Hydra (src/ablate/run/forked.py, what
a study's rounds use), so a test pays the ~5 s of imports once per test worker instead of once per
command. The child is a fresh process for everything else: its own argv, cwd and environment,
ablate imported anew, stdout and stderr captured at the file descriptors, its exit code (or
-signal) returned as subprocess.run would.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from ablate.run.forked import ForkedProgram


def run(
    overrides: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """Run the CLI in a forked child; a subprocess.CompletedProcess with text output."""
    return run_program(["-m", "ablate.train", *overrides], cwd, env, timeout)


def run_program(
    program: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """`python <program>` (`-m module args` or `script.py args`) in a forked child, as subprocess.run
    would run it with capture_output and text."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        proc = ForkedProgram(program, cwd, env, stdout=out, stderr=err)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        stdout, stderr = (Path(p).read_text(errors="replace") for p in (out, err))
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

"""`python -m ablate.train` in a process forked from a server that has already imported torch,
Lightning and Hydra (multiprocessing's forkserver), so a test pays the ~5 s of imports once per
test worker instead of once per command. The child is a fresh process for everything else: its
own argv, cwd and environment, ablate imported anew, stdout and stderr captured at the file
descriptors, its exit code (or -signal) returned as subprocess.run would.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

# Third-party only: ablate itself is imported in each child, under the child's environment.
PRELOAD = ["torch", "lightning", "hydra", "omegaconf", "torchmetrics", "scipy.stats", "albumentations",
           "matplotlib", "tensorboard"]  # fmt: skip
_context = None


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """In the forked process: become `python -m ablate.train <argv>` with stdout/err to files."""
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["-m", *argv]
    try:
        runpy.run_module("ablate.train", run_name="__main__", alter_sys=True)
    finally:
        _stop_joblib_workers()


def _stop_joblib_workers() -> None:
    """Stop the loky workers a joblib sweep leaves idle: they time out after 300 s, and a
    multiprocessing child joins its children at exit (a plain `python -m` process does not wait)."""
    reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(reusable, "_executor", None) if reusable else None
    if executor is not None:
        executor.shutdown(wait=True)


def run(
    overrides: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """Run the CLI in a forked child; a subprocess.CompletedProcess with text output."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        proc = _server().Process(target=_child, args=(list(overrides), str(cwd), env, out, err))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["ablate.train", *overrides], timeout)
        stdout, stderr = (Path(p).read_text(errors="replace") for p in (out, err))
    args = [sys.executable, "-m", "ablate.train", *overrides]
    return subprocess.CompletedProcess(args, proc.exitcode, stdout, stderr)

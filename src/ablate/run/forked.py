"""`python -m <module> ...` in a process forked from a server that imported the training stack once.

A study's rounds are `python -m ablate.train -m ...` commands. Started fresh, each paid torch's,
Lightning's and Hydra's imports again (5-9 s on the 2-core VM); forked from multiprocessing's
forkserver, which imports them once, a round after the first starts in ~2 s. The child is
otherwise the fresh program: its own argv, cwd and environment, ablate imported anew (the server
preloads third-party modules only, so no state of the caller comes along), its exit status as
`subprocess.Popen.returncode` gives it (-N for signal N). Where forkserver is not a start method
(Windows), `start` returns a plain `subprocess.Popen`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Third-party only: ablate itself is imported in each child, under the child's environment.
PRELOAD = ("torch", "lightning", "hydra", "omegaconf", "torchmetrics", "scipy.stats", "albumentations",
           "matplotlib", "tensorboard")  # fmt: skip
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends
_context: multiprocessing.context.ForkServerContext | None = None


def _server() -> multiprocessing.context.ForkServerContext:
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(list(PRELOAD))
    return _context


def die_with_parent(parent: int | None = None) -> None:
    """SIGTERM when this process's parent ends (Linux's PR_SET_PDEATHSIG; a kill -9 of it too), so
    no child outlives its caller: it saves its place and ends, as on any SIGTERM. `parent`: the pid
    the parent had; if it has ended already, the SIGTERM comes now."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _let_the_server_end_with_its_caller() -> None:
    """Close this child's copy of the server's keep-alive pipe. The server ends when that pipe's
    writers are all gone; multiprocessing gives one to every child (so that the child could start
    processes from the same server), which kept the server, and so the parent-death signal, alive
    as long as the child itself. Without it the server ends when the caller does."""
    from multiprocessing import forkserver

    fd = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)
    if fd is not None:
        os.close(fd)
        forkserver._forkserver._forkserver_alive_fd = None


def _child(program: list[str], cwd: str, env: dict[str, str], out: str | None, err: str | None,
           orphan_stops: bool) -> None:  # fmt: skip
    """In the forked process: become `python <program>` (`-m module ...` or `script.py ...`)."""
    if orphan_stops:
        _let_the_server_end_with_its_caller()
        die_with_parent()  # the parent is the server
    for fd, path in ((1, out), (2, err)):
        if path is not None:
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(target, fd)
            os.close(target)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # multiprocessing made this child's default start method the server's (forkserver): a fresh
    # interpreter has the platform's (fork on Linux), and DataLoader workers started through a
    # forkserver of their own took 48 s for 3 steps of a toy run instead of under 1
    multiprocessing.set_start_method(None, force=True)
    try:
        if program[0] == "-m":
            sys.argv = program[1:]
            runpy.run_module(program[1], run_name="__main__", alter_sys=True)
        else:  # a script: its folder first on sys.path, as `python script.py` puts it
            sys.argv = list(program)
            sys.path.insert(0, os.path.dirname(os.path.abspath(program[0])))
            runpy.run_path(program[0], run_name="__main__")
    finally:
        _stop_joblib_workers()


def _stop_joblib_workers() -> None:
    """Stop the loky workers a joblib sweep leaves idle: they time out after 300 s, and a
    multiprocessing child joins its children at exit (a plain `python -m` process does not wait)."""
    reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(reusable, "_executor", None) if reusable else None
    if executor is not None:
        executor.shutdown(wait=True)


class ForkedProgram:
    """A program running in a forked child, with the part of `subprocess.Popen`'s interface a
    caller that waits, signals and kills needs."""

    def __init__(self, program: Sequence[str], cwd: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, stdout: str | None = None,
                 stderr: str | None = None, die_with_parent: bool = False) -> None:  # fmt: skip
        self.args = [sys.executable, *program]
        env = dict(os.environ if env is None else env)
        cwd = os.fspath(cwd if cwd is not None else os.getcwd())
        self._proc = _server().Process(
            target=_child, args=(list(program), cwd, env, stdout, stderr, die_with_parent)
        )
        self._proc.start()
        self.pid = self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode

    def poll(self) -> int | None:
        """The exit status, or None while running."""
        return self._proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit (subprocess.TimeoutExpired after `timeout` seconds); its status."""
        self._proc.join(timeout)
        if self._proc.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._proc.exitcode

    def send_signal(self, sig: int) -> None:
        if self._proc.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(
    program: Sequence[str], die_with_parent: bool = False
) -> ForkedProgram | subprocess.Popen:
    """Start `python <program>` forked from the server (a fresh interpreter where there is none),
    with the caller's cwd, environment, stdout and stderr."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return subprocess.Popen([sys.executable, *program])  # Windows: no forking
    return ForkedProgram(program, die_with_parent=die_with_parent)


def run(program: Sequence[str], cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """`subprocess.run([python, *program], capture_output=True, text=True, timeout=timeout)`, forked
    from the server: for a caller that checks what a program prints, not how long it takes to start."""
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

"""`python -m ablate.train` (or a benchmark script) run as subprocess.run would, in a process forked
from a server that has already imported torch, Lightning and Hydra (src/ablate/run/forked.py, what
a study's rounds use), so a test pays the ~5 s of imports once per test worker instead of once per
command. The child is a fresh process for everything else: its own argv, cwd and environment,
ablate imported anew, stdout and stderr captured at the file descriptors, its exit code (or
-signal) returned as subprocess.run would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import weakref
from pathlib import Path

from ablate.run import forked


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
    return forked.run(program, cwd, env, timeout)


def _terminal_child(program: list[str], cwd: str, env: dict[str, str], out: str, err: str,
                    new_session: bool) -> None:  # fmt: skip
    """In the forked child: a terminal job's process (its own session if asked; Ctrl-C raising
    KeyboardInterrupt, whatever the test runner's own handling), output to files, then the program."""
    if new_session:
        os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    targets = {path: os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) for path in {out, err}}
    os.dup2(targets[out], 1)
    os.dup2(targets[err], 2)  # err == out: one file, as stderr=subprocess.STDOUT gives
    for fd in targets.values():
        os.close(fd)
    forked._child(program, cwd, env, None, None, False)


class Started(forked.ForkedProgram):
    """`subprocess.Popen([python, *program], text=True, stdout=PIPE, stderr=PIPE or STDOUT,
    start_new_session=...)` with Ctrl-C as in a terminal, forked as `run_program` forks: a
    ForkedProgram (pid, poll, wait, send_signal, kill) whose output `communicate` returns."""

    def __init__(self, program: list[str], cwd: Path, env: dict[str, str],
                 merge_stderr: bool = False, new_session: bool = False) -> None:  # fmt: skip
        self._dir = tempfile.mkdtemp()
        self._out = os.path.join(self._dir, "out")
        self._err = self._out if merge_stderr else os.path.join(self._dir, "err")
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        args = (list(program), os.fspath(cwd), dict(env), self._out, self._err, new_session)
        self._proc = forked._server().Process(target=_terminal_child, args=args)
        self._proc.start()
        self.pid = self._proc.pid
        self.args = ["python", *program]

    def communicate(self, timeout: float | None = None) -> tuple[str, str | None]:
        """Wait for the exit; its stdout and stderr (None when merged into stdout), as text."""
        self.wait(timeout)
        out = Path(self._out).read_text(errors="replace")
        err = None if self._err == self._out else Path(self._err).read_text(errors="replace")
        return out, err

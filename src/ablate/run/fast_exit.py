"""Ending a command-line process without the interpreter's module teardown.

With torch, Lightning and Hydra loaded (~4,000 modules), Python's own teardown after `sys.exit`
takes ~1.5 s on the 2-core VM: a cost every `python -m ablate.train` paid after its work was done.
`run_as_program` does what that exit does for the work (joins the threads, runs the atexit
handlers, among them logging's shutdown, flushes the standard streams), then ends the process.
Only the entry points' `__main__` use it; `main()` functions called in-process return as before.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def exit_code(code: object) -> int:
    """The status `sys.exit(code)` gives: None is 0, an int itself, anything else is printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_now(code: object = 0, by_signal: int | None = None) -> NoReturn:
    """Finish what `sys.exit` would (threads, atexit handlers, streams), then `os._exit`.

    by_signal: end by that signal instead (its default action), as Python ends on Ctrl-C, so that
    a calling shell sees it and stops its loop too.
    """
    status = exit_code(code)
    # The interpreter's own first steps at exit, in its order: threading's exit callbacks (they
    # stop concurrent.futures' and loky's manager threads), then it joins every non-daemon thread;
    # then the atexit handlers. Joining before those callbacks would wait forever.
    threading._shutdown()
    atexit._run_exitfuncs()  # logging's shutdown, joblib/loky, multiprocessing, TensorBoard
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing to do
            stream.flush()
    if by_signal is not None:
        signal.signal(by_signal, signal.SIG_DFL)
        os.kill(os.getpid(), by_signal)
        status = 128 + by_signal  # if the signal is blocked: what a shell would report for it
    os._exit(status)


def run_as_program(main: Callable[[], object], ctrl_c: str = "stopped by Ctrl-C") -> NoReturn:
    """Run `main` as the whole process: its return value or SystemExit is the status, at once.

    Ctrl-C (KeyboardInterrupt) prints `<program>: <ctrl_c>` instead of a traceback and ends the
    process by SIGINT. Any other exception goes on to Python's own handling (its traceback).
    """
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    except BrokenPipeError:  # `--help | head`: the reader left; quiet, as Python's docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    except KeyboardInterrupt:
        print(f"{program_name()}: {ctrl_c}", file=sys.stderr)
        exit_now(1, by_signal=signal.SIGINT)
    exit_now(code)


def program_name() -> str:
    """`ablate.train` for `python -m ablate.train`, else the script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = spec.name.removesuffix(".__main__") if spec is not None else ""
    return name or os.path.basename(sys.argv[0])

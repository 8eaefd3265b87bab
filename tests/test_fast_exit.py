"""ablate.run.fast_exit ends a process as `sys.exit` would, minus the interpreter's teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

# A program that leaves work for the exit: a non-daemon thread still writing, a process pool not
# shut down (its manager thread stops only on threading's exit callback), an atexit handler,
# a buffered log handler (flushed only at logging.shutdown) and unflushed stdout/stderr.
PROGRAM = textwrap.dedent(
    """
    import atexit, logging, logging.handlers, sys, threading, time
    from pathlib import Path
    out = Path(sys.argv[1])
    code = eval(sys.argv[2])
    def late():
        time.sleep(0.2)
        (out / "thread.txt").write_text("thread done")
    threading.Thread(target=late).start()
    from concurrent.futures import ProcessPoolExecutor  # left running: its manager thread too
    pool = ProcessPoolExecutor(1)
    assert pool.submit(abs, -1).result() == 1
    atexit.register(lambda: (out / "atexit.txt").write_text("atexit ran"))
    handler = logging.handlers.MemoryHandler(1000, target=logging.FileHandler(out / "log.txt"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().warning("logged before the exit")
    sys.stdout.write("partial line without newline")
    sys.stderr.write("to stderr")
    def main():
        sys.exit(code)
    if sys.argv[3] == "fast":
        from ablate.run.fast_exit import run_as_program
        run_as_program(main)
    main()
    """
)


def _run(tmp: Path, code: object, how: str) -> tuple[int, str, str, dict[str, str]]:
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM, str(tmp), repr(code), how],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=15)  # it takes ~0.3 s
    except subprocess.TimeoutExpired:  # a hung exit: kill it and the pool's worker too
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    files = {p.name: p.read_text() for p in sorted(tmp.iterdir())}
    return proc.returncode, out, err, files


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(
    code=st.one_of(
        st.none(),
        st.integers(0, 255),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20),
    )
)
def test_the_fast_exit_ends_as_sys_exit_does(tmp_path_factory, code):
    """Same status, output, thread, atexit and log results as Python's own exit, for any code."""
    root = tmp_path_factory.mktemp("exit")
    slow = _run(root / "python", code, "python")
    fast = _run(root / "fast", code, "fast")
    assert fast == slow
    assert slow[3] == {"atexit.txt": "atexit ran", "log.txt": "logged before the exit\n",
                       "thread.txt": "thread done"}  # fmt: skip


def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`python -m ablate.train --help | head -1`: the program stops quietly when the pipe closes."""
    program = textwrap.dedent(
        """
        import sys
        from ablate.run.fast_exit import run_as_program
        def main():
            for i in range(200_000):
                print(f"line {i}")
        run_as_program(main)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)  # fmt: skip
    assert writer.stdout.readline() == b"line 0\n"
    writer.stdout.close()  # the reader leaves, as head does
    assert writer.wait(timeout=60) == 1
    assert writer.stderr.read() == b""


def test_ctrl_c_ends_by_sigint_with_one_line_after_the_exit_work(tmp_path):
    """KeyboardInterrupt: the exit work done as Python does it, one line instead of a traceback,
    and the process ends by SIGINT, as Python's own does (so a calling shell's loop stops too)."""
    program = PROGRAM.replace("sys.exit(code)", "raise KeyboardInterrupt").replace(
        "run_as_program(main)", 'run_as_program(main, ctrl_c="stopped; run it again")'
    )
    runs = {}
    for how in ("python", "fast"):
        (tmp_path / how).mkdir()
        proc = subprocess.run([sys.executable, "-c", program, str(tmp_path / how), "0", how],
                              capture_output=True, text=True, timeout=15)  # fmt: skip
        runs[how] = proc
        assert proc.returncode == -signal.SIGINT, proc.stderr
        files = {p.name for p in (tmp_path / how).iterdir()}
        assert files == {"atexit.txt", "log.txt", "thread.txt"}
    assert "Traceback" in runs["python"].stderr
    assert runs["fast"].stderr == "to stderr-c: stopped; run it again\n"
    assert runs["fast"].stdout == runs["python"].stdout == "partial line without newline"

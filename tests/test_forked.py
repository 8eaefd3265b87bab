"""ablate.run.forked: a program forked from the preloaded server behaves as `python <program>` does
for a caller that waits on it, signals it, or dies (what a study's rounds rely on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ablate.run.forked import ForkedProgram

SCRIPT = """
import json, multiprocessing, os, sys
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "var": os.environ.get("FORKED_VAR"),
                  "path0": sys.path[0], "start": multiprocessing.get_start_method()}))
sys.exit(int(sys.argv[1]))
"""


def test_a_forked_script_gets_its_argv_cwd_environment_and_exit_code(tmp_path: Path) -> None:
    import json

    script, out, where = tmp_path / "prog.py", tmp_path / "out", tmp_path / "here"
    script.write_text(SCRIPT)
    where.mkdir()
    env = {**os.environ, "FORKED_VAR": "forty-two"}
    proc = ForkedProgram([str(script), "3", "b c"], where, env, stdout=str(out))
    assert proc.wait(60) == 3 == proc.returncode
    seen = json.loads(out.read_text())
    # the start method a fresh interpreter has (DataLoader workers, forked launcher workers), not
    # the server's forkserver
    fresh = subprocess.run([sys.executable, str(script), "0"], capture_output=True, text=True)
    assert seen == {"argv": ["3", "b c"], "cwd": str(where), "var": "forty-two",
                    "path0": str(tmp_path), "start": json.loads(fresh.stdout)["start"]}  # fmt: skip
    assert "FORKED_VAR" not in os.environ  # the caller's own environment is untouched


def test_a_forked_program_is_waited_on_and_signalled_as_a_popen_is(tmp_path: Path) -> None:
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    proc = ForkedProgram([str(script)], tmp_path)
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM  # as Popen.returncode reports a signal
    proc.send_signal(signal.SIGTERM)  # after the exit: nothing to signal, no error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_started_to_die_with_its_caller_ends_when_the_caller_is_killed(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    (tmp_path / "child.py").write_text(
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
    )
    caller = textwrap.dedent(f"""
        import time
        from ablate.run import forked
        forked.PRELOAD = ()  # a light server: only the dying matters here
        forked.start([{str(tmp_path / "child.py")!r}], die_with_parent=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", caller], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        proc.kill()  # kill -9: the caller runs no cleanup of its own
        proc.wait()
        deadline = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < deadline, "the child outlived its killed caller"
            time.sleep(0.05)
    finally:
        if pid_file.exists() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether pid is a running process (a zombie awaiting its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"

"""scripts/gpu_check.sh, the GPU check prepared before a GPU is lent, runs end to end on CPU (--dry-run)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from conftest import REPO


def test_gpu_check_dry_run_prints_a_row_per_part(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    proc = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", "--data-root", str(data_root),
         "--cache-dir", str(tmp_path / "cache"), "--parts", "airbench,mlp,vectorized",
         "--out", str(out)],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert table.startswith("GPU check (dry run, nothing measured")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    # the header, airbench, the MLP twice, the stacked MLPs without and with BatchNorm, what is not built
    assert len(rows) == 1 + 6, table
    assert "not run: it needs CUDA (its data written:" in table
    assert "steps_per_call=1 | " in table and "(S=1," in table
    auto = next(line for line in rows if "steps_per_call=auto" in line)
    assert "(S=1," not in auto and "steps/s" in auto  # toy data: 5 batches an epoch, S=5
    stacked = [line for line in rows if "K stacked Ioffe MLPs" in line]
    assert len(stacked) == 2 and all(re.search(r"group \d+, \d+; .* \d+\.\dx", r) for r in stacked)
    assert "not built: a group trains on one CPU device" in table

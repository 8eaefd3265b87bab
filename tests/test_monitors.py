"""Project callbacks that measure the process: resident memory."""

from __future__ import annotations

import numpy as np

from ablate.diagnostics.monitors import rss_mb


def test_rss_follows_a_large_allocation():
    before = rss_mb()
    block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched so it is resident
    during = rss_mb()
    assert before > 10
    assert during - before > 48
    del block

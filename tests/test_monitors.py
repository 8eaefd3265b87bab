"""Project callbacks that measure the process: resident memory."""

from __future__ import annotations

import mmap

from ablate.diagnostics.monitors import rss_mb


def test_rss_follows_a_large_allocation():
    before = rss_mb()
    # Fresh pages (an anonymous map), written so they are resident: a numpy array could reuse
    # memory the allocator already holds from earlier tests in this process.
    block = mmap.mmap(-1, 64 * 2**20)
    block.write(b"\1" * len(block))
    during = rss_mb()
    assert before > 10
    assert during - before > 48
    block.close()

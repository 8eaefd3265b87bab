"""Faults injected into datasets, the decoded-data cache and sweep summaries, and how each is met."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import forked_cli
import numpy as np
import pytest
from conftest import REPO, fast_overrides, load_dataset, locate_dataset, patch_read, run_cli

from ablate.data import cache as dataset_cache
from ablate.data.decode import DatasetCorruptError, DatasetNotFoundError, ImageData
from ablate.data.sources import source

RAW = Path("MNIST") / "raw"
TRAIN_IMAGES = 600 * 28 * 28 + 16  # bytes of the toy train-images-idx3-ubyte in conftest


def copy_tree(src: Path, dst: Path) -> Path:
    """A private copy of part of the shared toy data, safe to damage."""
    shutil.copytree(src, dst)
    return dst


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
    }


def arrays_of(data: ImageData) -> list[np.ndarray]:
    return [data.train.x, data.train.y, data.test.x, data.test.y]


def count_decodes(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Wrap the source's read so that each decode appends to the returned list."""
    calls: list[str] = []
    real = source(name).read

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    patch_read(monkeypatch, name, counted)
    return calls


# --- truncated or inconsistent IDX files ------------------------------------------------------


def _cut_in_half(raw: Path) -> None:
    f = raw / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[: TRAIN_IMAGES // 2])


def _header_claims_more(raw: Path) -> None:
    f = raw / "train-images-idx3-ubyte"
    f.write_bytes(struct.pack(">IIII", 0x803, 700, 28, 28) + f.read_bytes()[16:])


def _trailing_bytes(raw: Path) -> None:
    with (raw / "train-images-idx3-ubyte").open("ab") as f:
        f.write(b"\0" * 10)


def _labels_count_differs(raw: Path) -> None:
    f = raw / "train-labels-idx1-ubyte"
    f.write_bytes(struct.pack(">II", 0x801, 599) + f.read_bytes()[8:-1])


def _not_idx(raw: Path) -> None:
    (raw / "train-images-idx3-ubyte").write_bytes(b"<html>404 Not Found</html>")


IDX_FAULTS = {
    "cut_in_half": (
        _cut_in_half,
        ["train-images-idx3-ubyte is truncated", f"expected {TRAIN_IMAGES} bytes, found 235208"],
    ),
    "header_claims_more": (
        _header_claims_more,
        ["truncated", "header says 700 x 28 x 28", f"found {TRAIN_IMAGES}"],
    ),
    "trailing_bytes": (_trailing_bytes, ["too long", f"found {TRAIN_IMAGES + 10}"]),
    "labels_count_differs": (
        _labels_count_differs,
        ["holds 600 images but train-labels-idx1-ubyte holds 599 labels", "delete both"],
    ),
    "not_idx": (_not_idx, ["is not an IDX file", "found 26 bytes starting 3c68746d"]),
}


@pytest.mark.parametrize("fault", sorted(IDX_FAULTS))
def test_damaged_idx_is_reported_with_file_sizes_and_fix(fault, data_root, tmp_path):
    inject, expected = IDX_FAULTS[fault]
    root = tmp_path / "data"
    copy_tree(data_root / "MNIST", root / "MNIST")
    inject(root / RAW)
    before = snapshot(root)

    for call in (
        lambda: locate_dataset("mnist", root, download=True),  # what the CLI's config check runs
        lambda: load_dataset("mnist", root, tmp_path / "cache", download=True),
    ):
        with pytest.raises(DatasetCorruptError) as err:
            call()
        message = str(err.value)
        assert isinstance(err.value, DatasetNotFoundError)  # so the CLI shows one line, exit 2
        assert str((root / RAW).resolve()) in message
        for part in expected:
            assert part in message, message
        assert "Fix:" in message and ("download" in message or "replace" in message)
    assert snapshot(root) == before, "the damaged file must be left alone"
    assert not any((tmp_path / "cache").glob("mnist-*/*.npy")), "nothing decoded or cached"


def test_truncated_idx_stops_the_cli_with_one_line_before_training(data_root, tmp_path):
    root = tmp_path / "data"
    copy_tree(data_root / "MNIST", root / "MNIST")
    _cut_in_half(root / RAW)
    overrides = [o for o in fast_overrides(data_root, tmp_path) if not o.startswith("data.root")]
    proc = run_cli(
        *overrides, f"data.root={root}", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert str(root / RAW / "train-images-idx3-ubyte") in errors[0]
    assert f"expected {TRAIN_IMAGES} bytes, found 235208" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


# --- corrupt images ---------------------------------------------------------------------------


def _garbage(f: Path) -> None:
    f.write_bytes(b"\x89PNG this is not really an image" * 3)


def _truncated(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _empty(f: Path) -> None:
    f.write_bytes(b"")


@pytest.mark.parametrize("damage", [_garbage, _truncated, _empty], ids=lambda d: d.__name__[1:])
@pytest.mark.parametrize("dataset", ["image_folder", "cifar10"])
def test_corrupt_image_names_the_file_and_the_fix(dataset, damage, data_root, tmp_path):
    if dataset == "image_folder":
        root = copy_tree(data_root / "folder", tmp_path / "folder")
        bad = (
            root
            / "test"
            / "class_3"
            / sorted(p.name for p in (root / "test" / "class_3").iterdir())[0]
        )
    else:
        root = tmp_path / "data"
        copy_tree(data_root / "cifar10-jpg", root / "cifar10-jpg")
        bad = next((root / "cifar10-jpg" / "train" / "frog").iterdir())
    damage(bad)
    damaged = bad.read_bytes()

    with pytest.raises(DatasetCorruptError) as err:
        load_dataset(
            dataset, root, tmp_path / "cache", download=False, channels=3, image_size=(32, 32)
        )
    message = str(err.value)
    assert f"Cannot read image {bad.resolve()}" in message
    assert "corrupt or truncated" in message and "delete that file or replace it" in message
    assert bad.read_bytes() == damaged, "the user's file is never deleted or rewritten"


def make_tarball(src: Path, dst: Path, bad_member: bytes | None = None) -> Path:
    """cifar10-jpg.tar.gz from the toy jpg folder, optionally with one garbage member added."""
    dst.mkdir(parents=True, exist_ok=True)
    path = dst / "cifar10-jpg.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="cifar10-jpg")
        if bad_member is not None:
            info = tarfile.TarInfo("cifar10-jpg/train/bird/zz_bad.jpg")
            info.size = len(bad_member)
            tar.addfile(info, io.BytesIO(bad_member))
    return path


def test_corrupt_member_of_cifar_tarball(data_root, tmp_path):
    root = tmp_path / "data"
    tarball = make_tarball(data_root / "cifar10-jpg", root, bad_member=b"\xff\xd8\xff garbage")
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("cifar10", root, tmp_path / "cache", download=False)
    message = str(err.value)
    assert f"{tarball.resolve()}:cifar10-jpg/train/bird/zz_bad.jpg" in message
    assert "download cifar10-jpg.tar.gz again or replace it" in message


def test_truncated_cifar_tarball(data_root, tmp_path):
    root = tmp_path / "data"
    tarball = make_tarball(data_root / "cifar10-jpg", root)
    tarball.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    with pytest.raises(DatasetCorruptError) as err:
        load_dataset("cifar10", root, tmp_path / "cache", download=False)
    message = str(err.value)
    assert f"Cannot read archive {tarball.resolve()}: it is truncated or corrupt" in message
    assert "download cifar10-jpg.tar.gz again" in message


def test_corrupt_image_stops_the_cli_with_one_line(data_root, tmp_path):
    root = copy_tree(data_root / "folder", tmp_path / "folder")
    bad = next((root / "train" / "class_0").iterdir())
    _garbage(bad)
    overrides = [o for o in fast_overrides(data_root, tmp_path) if not o.startswith("data.root")]
    proc = run_cli(
        "data=image_folder", *overrides, f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"Cannot read image {bad.resolve()}" in errors[0], proc.stderr[
        -3000:
    ]
    assert "Traceback" not in proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and str(bad.resolve()) in summary["error"]


# --- the decoded-data cache -------------------------------------------------------------------


def entry_of(cache: Path) -> Path:
    (entry,) = cache.iterdir()  # one entry, and no lock or temporary files beside it
    return entry


def test_cache_records_size_and_checksum_of_each_array(data_root, tmp_path):
    cache = tmp_path / "cache"
    load_dataset("mnist", data_root, cache)
    entry = entry_of(cache)
    meta = json.loads((entry / "classes.json").read_text())
    assert meta["cache_version"] == dataset_cache.CACHE_VERSION
    assert sorted(meta["arrays"]) == sorted(dataset_cache._ARRAYS)
    for key, check in meta["arrays"].items():
        file = entry / f"{key}.npy"
        assert check["bytes"] == file.stat().st_size
        assert check["sha256"] == hashlib.sha256(np.load(file).tobytes()).hexdigest()


def _flip_one_pixel(entry: Path) -> None:
    f = entry / "train_x.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # same size: only the checksum can tell
    f.write_bytes(bytes(data))


def _edit_meta(edit) -> object:
    def inject(entry: Path) -> None:
        meta = json.loads((entry / "classes.json").read_text())
        edit(meta)
        (entry / "classes.json").write_text(json.dumps(meta))

    return inject


CACHE_FAULTS = {
    "array_missing": (lambda e: (e / "train_y.npy").unlink(), "cannot read train_y.npy"),
    "array_truncated": (
        lambda e: (e / "train_x.npy").write_bytes((e / "train_x.npy").read_bytes()[:1000]),
        "train_x.npy has 1000 bytes, expected",
    ),
    "array_bit_flip": (_flip_one_pixel, "train_x.npy fails its checksum"),
    "array_not_npy": (
        lambda e: (e / "test_y.npy").write_bytes(b"x" * (e / "test_y.npy").stat().st_size),
        "cannot read test_y.npy",
    ),
    "meta_garbage": (lambda e: (e / "classes.json").write_text('{"classes": ['), "unreadable"),
    "meta_missing": (lambda e: (e / "classes.json").unlink(), "incomplete (no classes.json"),
    "wrong_version": (
        _edit_meta(lambda m: m.update(cache_version="0")),
        f"cache version '0', expected {dataset_cache.CACHE_VERSION!r}",
    ),
    "older_format": (
        _edit_meta(lambda m: [m.pop("cache_version"), m.pop("arrays")]),
        "written by an older ablate",
    ),
    "checksum_entry_missing": (
        _edit_meta(lambda m: m["arrays"].pop("test_x")),
        "malformed classes.json",
    ),
}


@pytest.mark.parametrize("fault", sorted(CACHE_FAULTS))
def test_stale_or_corrupt_cache_is_rebuilt_with_a_warning(
    fault, data_root, tmp_path, monkeypatch, caplog
):
    inject, reason = CACHE_FAULTS[fault]
    cache = tmp_path / "cache"
    decodes = count_decodes(monkeypatch, "mnist")
    expected = arrays_of(load_dataset("mnist", data_root, cache))
    source = snapshot(data_root)
    entry = entry_of(cache)
    inject(entry)

    with caplog.at_level(logging.INFO, logger="ablate.data.cache"):
        rebuilt = load_dataset("mnist", data_root, cache)
    for got, want in zip(arrays_of(rebuilt), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(decodes) == 2, "decoded again from the source"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"Rebuilding dataset cache {entry}" in warnings[0]
    assert reason in warnings[0], warnings[0]

    caplog.clear()
    again = load_dataset(
        "mnist", data_root, cache
    )  # the rebuilt entry verifies: no decode, no warning
    assert len(decodes) == 2 and not caplog.records
    np.testing.assert_array_equal(again.train.x, expected[0])
    assert entry_of(cache) == entry
    assert snapshot(data_root) == source, "the data root is never written"


def test_absent_cache_is_built_without_a_warning(data_root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ablate.data.cache"):
        load_dataset("mnist", data_root, tmp_path / "cache")
    assert not caplog.records


# --- two processes preparing the same cache ---------------------------------------------------

CHILD = textwrap.dedent(
    """
    import hashlib, logging, sys, time
    from pathlib import Path

    from ablate.data import cache
    from ablate.data.sources.mnist import MNIST

    root, cache_dir, work, me = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    log_file = work / f"log-{me}.txt"
    logging.basicConfig(filename=log_file, level=logging.INFO, format="%(message)s", force=True)
    real = MNIST.read


    def other_is_waiting():
        logs = [p for p in work.glob("log-*.txt") if p != log_file]
        return any("Waiting for another process" in p.read_text() for p in logs)


    def decode(*args, **kwargs):
        with (work / "decodes.txt").open("a") as f:
            f.write(me + "\\n")
        # Keep the lock until the other process is seen blocked on it (at most 30 s).
        deadline = time.monotonic() + 30
        while not other_is_waiting() and time.monotonic() < deadline:
            time.sleep(0.05)
        return real(*args, **kwargs)


    MNIST.read = classmethod(lambda cls, *a, **k: decode(*a, **k))
    (work / f"ready-{me}").touch()
    while not (work / "go").exists():
        time.sleep(0.01)
    data = cache.load("mnist", MNIST.read, root, cache_dir, download=False)
    arrays = (data.train.x, data.train.y, data.test.x, data.test.y)
    print(hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest())
    """
)


def test_two_processes_share_one_decode(data_root, tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    script = work / "child.py"
    script.write_text(CHILD)
    procs = [  # two processes (forked: tests/forked_cli.py), each importing ablate anew
        forked_cli.Started(
            [str(script), str(data_root), str(cache), str(work), name], REPO, dict(os.environ)
        )
        for name in ("a", "b")
    ]
    try:
        deadline = time.monotonic() + 120
        while not all((work / f"ready-{n}").exists() for n in "ab"):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        (work / "go").touch()  # both start loading into the empty cache at the same moment
        outputs = [p.communicate(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]

    digests = [out.strip() for out, _ in outputs]
    data = load_dataset("mnist", data_root, tmp_path / "reference-cache")
    expected = hashlib.sha256(b"".join(a.tobytes() for a in arrays_of(data))).hexdigest()
    assert digests == [expected, expected]
    assert len((work / "decodes.txt").read_text().split()) == 1, "decoded once, not twice"
    logs = [(work / f"log-{n}.txt").read_text() for n in "ab"]
    waited = [log for log in logs if "Waiting for another process" in log]
    assert len(waited) == 1 and "written by another process" in waited[0]
    assert entry_of(cache).name.startswith("mnist-")  # the lock file is gone, the entry stays


# --- unreadable summary.json in a sweep report ------------------------------------------------


def write_run(sweep: Path, norm: str, status: str = "completed") -> Path:
    """<sweep>/norm=<norm>,seed=0/summary.json in the layout ablate.train writes."""
    run = sweep / f"norm={norm},seed=0"
    run.mkdir(parents=True)
    summary = {
        "status": status,
        "seed": 0,
        "overrides": [f"norm={norm}", "seed=0"],
        "swept": ["norm", "seed"],
        "choices": {"norm": norm, "data": "mnist", "model": "cnn"},
        "config": {"data": {"dataset": "mnist"}, "trainer": {"max_epochs": 1}, "seed": 0},
        "metrics": {"test/acc": 0.9123, "val/acc_best": 0.9, "test/loss": 0.3},
        "history": [{"step": 10, "val/acc": 0.5}, {"step": 20, "val/acc": 0.9}],
        "steps": 20,
        "epochs": 1,
        "wall_time_s": 3.0,
    }
    path = run / "summary.json"
    path.write_text(json.dumps(summary))
    return path


def test_report_skips_and_lists_unreadable_summaries(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep, "batch")
    truncated = write_run(sweep, "none")
    truncated.write_text(truncated.read_text()[:40])
    binary = write_run(sweep, "group")
    binary.write_bytes(b"\x00\xff\xfe not json")

    proc = subprocess.run(
        [sys.executable, "-m", "ablate.report", str(sweep)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for bad in (truncated, binary):
        assert f"skipped unreadable {bad}" in proc.stderr

    md = (sweep / "report" / "summary.md").read_text()
    assert "Skipped, unreadable summary.json (2):" in md
    for bad in (truncated, binary):
        assert f"(file `{bad}`)" in md
    assert "1 completed" in md and "2 corrupt" in md
    with (sweep / "report" / "results.csv").open() as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert rows["norm=batch,seed=0"]["status"] == "completed"
    assert float(rows["norm=batch,seed=0"]["test/acc"]) == pytest.approx(0.9123)
    assert rows["norm=none,seed=0"]["status"] == "corrupt"

"""Shared fixtures: tiny generated datasets in every on-disk format, and a runner for the real CLI."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import forked_cli
import numpy as np
import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # Parallel test workers each running torch on every core oversubscribe them: OpenMP threads
    # spin while they wait. One thread per worker (and per CLI run it starts: threads=auto reads
    # OMP_NUM_THREADS) took 9 CLI tests from 145 s to 102 s on 2 cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The real datasets decoded once for every test that trains on them, where `make train` caches them
# (decoding real MNIST takes ~9 s; concurrent decodes are safe: test_reliability_data.py).
# Tests of decoding itself use their own folder; nothing is written into ../shared.
REAL_CACHE = REPO / "data" / "cache"
CIFAR_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def toy_images(
    n: int, size: int, channels: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy images: class k has a bright square at position k of a 5x2 grid, plus noise."""
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 60, (n, size, size, channels)).astype(np.uint8)
    cell = size // 5
    for i, k in enumerate(y):
        r, c = (k // 5) * (size // 2), (k % 5) * cell
        x[i, r + 2 : r + 2 + cell, c : c + cell - 1] = 255
    return x, y.astype(np.int64)


def write_idx(folder: Path, prefix: str, x: np.ndarray, y: np.ndarray) -> None:
    """Write images (N, H, W) and labels in the IDX format of the MNIST files."""
    n, h, w = x.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x803, n, h, w) + x.tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x801, n) + y.astype(np.uint8).tobytes()
    )


def write_folder(
    root: Path, split: str, x: np.ndarray, y: np.ndarray, classes: list[str], ext: str
) -> None:
    """Write images as <root>/<split>/<class>/NNNN.<ext>."""
    from PIL import Image

    for i, (img, k) in enumerate(zip(x, y, strict=True)):
        d = root / split / classes[k]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(d / f"{i:04d}.{ext}")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with tiny MNIST, Fashion-MNIST (IDX), CIFAR-10 (jpg folders) and an image folder."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for name in ("MNIST", "FashionMNIST"):
        raw = root / name / "raw"
        raw.mkdir(parents=True)
        for prefix, n in (("train", 600), ("t10k", 200)):
            x, y = toy_images(n, 28, 1, rng)
            write_idx(raw, prefix, x[..., 0], y)
    for split, n in (("train", 300), ("test", 100)):
        x, y = toy_images(n, 32, 3, rng)
        write_folder(root / "cifar10-jpg", split, x, y, CIFAR_CLASSES, "jpg")
    folder = root / "folder"
    for split, n in (("train", 200), ("test", 60)):
        x, y = toy_images(n, 40, 3, rng)  # 40x40: resized to the config's 32x32
        write_folder(folder, split, x, y, [f"class_{k}" for k in range(10)], "png")
    return root


def run_cli(
    *overrides: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run `python -m ablate.train` with the given arguments (in a process forked from one that has
    imported torch and Lightning already: tests/forked_cli.py); returns the completed process."""
    full_env = {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "HYDRA_FULL_ERROR": "1",
        **(env or {}),
    }
    return forked_cli.run(list(overrides), cwd, full_env, timeout)


def fast_overrides(data_root: Path, tmp: Path) -> list[str]:
    """Overrides that keep a CLI run tiny and inside tmp."""
    return [
        f"data.root={data_root}",
        f"data.cache_dir={tmp / 'cache'}",
        f"log_dir={tmp / 'logs'}",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "data.batch_size=32",
        "callbacks.progress_bar=null",
        "trainer.enable_model_summary=false",
        "data.eval_train_max=64",  # the train-test gap's re-scoring: 64 images, not all 540 (~0.6 s a run)
    ]


def patch_dataset_load(monkeypatch, n_train: int, n_test: int, size: int):
    """Patch the dataset cache to return generated size x size RGB images, 10 balanced classes."""
    from ablate.data import cache, decode

    rng = np.random.default_rng(0)

    def split(n: int) -> decode.Split:
        x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        return decode.Split(x, np.repeat(np.arange(10), n // 10))

    data = decode.ImageData(split(n_train), split(n_test), [str(k) for k in range(10)])
    monkeypatch.setattr(cache, "load", lambda *a, **k: data)
    return data


def summaries(folder: Path) -> dict[str, dict]:
    """Every summary.json under folder, keyed by its run directory's name."""
    return {p.parent.name: json.loads(p.read_text()) for p in folder.rglob("summary.json")}


def load_dataset(option: str, root, cache_dir, **kwargs):
    """conf/data/<option>'s dataset through the verified cache, as the datamodule loads it."""
    from ablate.data import cache
    from ablate.data.sources import source

    return cache.load(option, source(option).read, root, cache_dir, **kwargs)


def locate_dataset(option: str, root, *, download: bool) -> None:
    """What the config check runs: conf/data/<option>'s source looks for its files under root."""
    from ablate.data.sources import source

    source(option).locate(Path(root).expanduser().resolve(), download=download)


def patch_read(monkeypatch, option: str, read) -> None:
    """Replace conf/data/<option>'s decoding (the source's read) with read(root, **kwargs)."""
    from ablate.data.sources import source

    monkeypatch.setattr(source(option), "read", classmethod(lambda cls, *a, **k: read(*a, **k)))


def primary_setup(preset: str) -> list[str]:
    """The preset's open grid pinned to its declared primary setup (`report.open`), as overrides."""
    from hydra import compose, initialize_config_dir

    from ablate.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        grid = compose("train", overrides=[f"experiment={preset}"]).report.get("open") or {}
    return [
        f"{k}={json.dumps(v) if v is None or isinstance(v, bool) else v}" for k, v in grid.items()
    ]


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    """A command exited 0; else fail with its exit code and the end of its output."""
    assert proc.returncode == 0, (
        f"{proc.args}\nexit {proc.returncode}\n{(proc.stdout or '')[-2000:]}\n{(proc.stderr or '')[-4000:]}"
    )

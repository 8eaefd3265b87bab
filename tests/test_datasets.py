"""Tests for ablate.data.cache on tiny generated data (plus opt-in real-data checks)."""

from __future__ import annotations

import io
import logging
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import load_dataset, locate_dataset, patch_read
from PIL import Image

from ablate.data.decode import DatasetNotFoundError, ImageData
from ablate.data.sources.cifar10 import CIFAR10_CLASSES
from ablate.data.sources.mnist import MNIST_FILES

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# --- helpers ----------------------------------------------------------------------------------


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(
        struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes()
    )


def make_mnist(root: Path, seed: int = 0, folder: str = "MNIST") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train_x": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train_y": np.array([3, 1, 4, 1, 5]),
        "test_x": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_y": np.array([9, 2, 6]),
    }
    write_idx_images(raw / "train-images-idx3-ubyte", arrays["train_x"])
    write_idx_labels(raw / "train-labels-idx1-ubyte", arrays["train_y"])
    write_idx_images(raw / "t10k-images-idx3-ubyte", arrays["test_x"])
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", arrays["test_y"])
    return arrays


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def assert_mnist_equal(data: ImageData, arrays: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(data.train.x, arrays["train_x"][..., None])
    np.testing.assert_array_equal(data.train.y, arrays["train_y"])
    np.testing.assert_array_equal(data.test.x, arrays["test_x"][..., None])
    np.testing.assert_array_equal(data.test.y, arrays["test_y"])


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    for name in ("mnist", "fashion_mnist", "cifar10", "image_folder"):
        patch_read(monkeypatch, name, fail)


# Pixel values per (split, class, index) that survive PNG exactly.
def grey_value(split: str, label: int, i: int) -> int:
    return 20 + 100 * label + 10 * i + (5 if split == "test" else 0)


def make_image_folder(root: Path, size: tuple[int, int] = (6, 4)) -> None:
    """Two classes; train has 3 images per class, test 2; each image one solid RGB colour."""
    for split, count in (("train", 3), ("test", 2)):
        for label, cls in enumerate(("cat", "dog")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                v = grey_value(split, label, i)
                # Different file formats, and names whose sorted order is the index order.
                ext = ("png", "PNG", "bmp")[i % 3]
                img = Image.new("RGB", (size[1], size[0]), (v, v, v))
                img.save(folder / f"img{i:02d}.{ext}", format="BMP" if ext == "bmp" else "PNG")
            (folder / "notes.txt").write_text("not an image")
            (folder / ".hidden.png").write_bytes(b"not an image either")
        (root / split / ".ipynb_checkpoints").mkdir()


CIFAR_COLOURS = {
    "airplane": (250, 10, 10),
    "bird": (10, 250, 10),
    "truck": (10, 10, 250),
}


def make_cifar_tarball(root: Path) -> Path:
    """cifar10-jpg.tar.gz with solid-colour 32x32 JPEGs: 2 train + 1 test image per class."""
    path = root / "cifar10-jpg.tar.gz"
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        # Added out of sorted order: the loader must sort, not trust the archive's order.
        for cls in reversed(CIFAR_COLOURS):
            for split, count in (("test", 1), ("train", 2)):
                for i in reversed(range(count)):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), CIFAR_COLOURS[cls]).save(buf, format="JPEG")
                    info = tarfile.TarInfo(f"cifar10-jpg/{split}/{cls}/{i:04d}.jpg")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


# --- mnist ------------------------------------------------------------------------------------


def test_mnist_idx_roundtrip_and_cache_hit(tmp_path, monkeypatch):
    root, cache = tmp_path / "data", tmp_path / "cache"
    arrays = make_mnist(root)
    before = snapshot(root)

    data = load_dataset("mnist", root, cache, download=True)

    assert_mnist_equal(data, arrays)
    assert data.train.x.dtype == np.uint8 and data.train.y.dtype == np.int64
    assert len(data.classes) == 10
    assert snapshot(root) == before, "nothing may be written into root when files exist"
    (entry,) = cache.iterdir()
    assert entry.name.startswith("mnist-")
    assert sorted(p.name for p in entry.iterdir()) == [
        "classes.json",
        "test_x.npy",
        "test_y.npy",
        "train_x.npy",
        "train_y.npy",
    ]

    # Second load must come from the cache: sources gone and decoders disabled.
    for f in (root / "MNIST" / "raw").iterdir():
        f.unlink()
    forbid_decoding(monkeypatch)
    again = load_dataset("mnist", root, cache, download=False)
    assert_mnist_equal(again, arrays)
    assert again.classes == data.classes


def test_fashion_mnist_layout(tmp_path):
    arrays = make_mnist(tmp_path / "data", seed=1, folder="FashionMNIST")
    data = load_dataset("fashion_mnist", tmp_path / "data", tmp_path / "cache", download=False)
    assert_mnist_equal(data, arrays)
    assert data.classes[0] == "T-shirt/top"


def test_mnist_channels_and_resize(tmp_path):
    make_mnist(tmp_path / "data")
    data = load_dataset(
        "mnist", tmp_path / "data", tmp_path / "cache", channels=3, image_size=(32, 30)
    )
    assert data.train.x.shape == (5, 32, 30, 3)
    assert data.test.x.shape == (3, 32, 30, 3)
    np.testing.assert_array_equal(data.train.x[..., 0], data.train.x[..., 2])


def test_mnist_missing_without_download(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("mnist", root, tmp_path / "cache", download=False)
    message = str(err.value)
    assert str(root.resolve() / "MNIST" / "raw") in message
    for name in MNIST_FILES:
        assert name in message
    assert "data.root" in message and "DATA_DIR" in message
    assert not root.exists()


def test_mnist_failed_download_is_not_found(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    (tmp_path / "data").mkdir()
    with pytest.raises(DatasetNotFoundError, match="download failed") as err:
        load_dataset("mnist", tmp_path / "data", tmp_path / "cache", download=True)
    assert "train-labels-idx1-ubyte" in str(err.value)
    assert "set data.download=true" not in str(err.value)  # it was on: the fix is the files
    assert list((tmp_path / "data").iterdir()) == []  # downloads go through a temporary folder


def test_different_roots_get_different_caches(tmp_path):
    cache = tmp_path / "cache"
    a = make_mnist(tmp_path / "a", seed=1)
    b = make_mnist(tmp_path / "b", seed=2)
    assert_mnist_equal(load_dataset("mnist", tmp_path / "a", cache), a)
    assert_mnist_equal(load_dataset("mnist", tmp_path / "b", cache), b)
    assert len(list(cache.iterdir())) == 2
    # Different conversion options are cached separately as well.
    load_dataset("mnist", tmp_path / "a", cache, image_size=(14, 14))
    assert len(list(cache.iterdir())) == 3
    assert_mnist_equal(load_dataset("mnist", tmp_path / "a", cache), a)


def test_the_source_not_only_the_name_keys_the_cache(tmp_path):
    # fashion_mnist relabelled data.dataset=mnist, same root and shape: it must not read MNIST's cache
    from ablate.data import cache as dataset_cache
    from ablate.data.sources import source

    cache = tmp_path / "cache"
    digits = make_mnist(tmp_path / "data", seed=1)
    fashion = make_mnist(tmp_path / "data", seed=2, folder="FashionMNIST")
    assert_mnist_equal(load_dataset("mnist", tmp_path / "data", cache), digits)
    relabelled = dataset_cache.load("mnist", source("fashion_mnist").read, tmp_path / "data", cache)
    assert_mnist_equal(relabelled, fashion)
    assert_mnist_equal(load_dataset("mnist", tmp_path / "data", cache), digits)  # not overwritten
    assert len(list(cache.iterdir())) == 2


def test_unwritable_cache_warns_and_still_returns(tmp_path, caplog):
    arrays = make_mnist(tmp_path / "data")
    cache = tmp_path / "cache-is-a-file"
    cache.write_text("")
    with caplog.at_level(logging.WARNING, logger="ablate.data.cache"):
        data = load_dataset("mnist", tmp_path / "data", cache)
    assert_mnist_equal(data, arrays)
    assert "Could not write dataset cache" in caplog.text


def test_incomplete_cache_is_rebuilt(tmp_path):
    arrays = make_mnist(tmp_path / "data")
    cache = tmp_path / "cache"
    load_dataset("mnist", tmp_path / "data", cache)
    (entry,) = cache.iterdir()
    (entry / "classes.json").unlink()  # as if killed before the cache was complete
    (entry / "train_x.npy").write_bytes(b"garbage")
    assert_mnist_equal(load_dataset("mnist", tmp_path / "data", cache), arrays)
    assert not [p for p in entry.iterdir() if p.name.endswith(".tmp")]


# --- image_folder -----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder_roundtrip(tmp_path, channels):
    root = tmp_path / "folder"
    make_image_folder(root)
    before = snapshot(root)
    data = load_dataset("image_folder", root, tmp_path / "cache", channels=channels)

    assert data.classes == ["cat", "dog"]
    assert data.train.x.shape == (6, 6, 4, channels)
    assert data.test.x.shape == (4, 6, 4, channels)
    np.testing.assert_array_equal(data.train.y, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(data.test.y, [0, 0, 1, 1])
    for split, count in (("train", 3), ("test", 2)):
        x = getattr(data, split).x
        expected = [grey_value(split, label, i) for label in (0, 1) for i in range(count)]
        assert (x == np.array(expected, dtype=np.uint8)[:, None, None, None]).all()
    assert snapshot(root) == before


def test_image_folder_resize(tmp_path):
    root = tmp_path / "folder"
    make_image_folder(root)
    # Make one image a different size: only allowed when image_size is set.
    Image.new("RGB", (9, 7), (1, 2, 3)).save(root / "train" / "dog" / "zz_big.png")
    with pytest.raises(ValueError, match="data.image_size"):
        load_dataset("image_folder", root, tmp_path / "cache", channels=3)

    data = load_dataset("image_folder", root, tmp_path / "cache", channels=3, image_size=(5, 8))
    assert data.train.x.shape == (7, 5, 8, 3)
    assert data.test.x.shape == (4, 5, 8, 3)
    np.testing.assert_array_equal(data.train.x[-1], np.broadcast_to([1, 2, 3], (5, 8, 3)))
    # Solid colours stay solid under bilinear resizing.
    assert (data.train.x[0] == grey_value("train", 0, 0)).all()


def test_image_folder_needs_channels(tmp_path):
    make_image_folder(tmp_path / "folder")
    with pytest.raises(ValueError, match="channels"):
        load_dataset("image_folder", tmp_path / "folder", tmp_path / "cache")


def test_image_folder_mismatched_classes(tmp_path):
    root = tmp_path / "folder"
    make_image_folder(root)
    (root / "test" / "dog").rename(root / "test" / "wolf")
    with pytest.raises(ValueError, match="class folders differ"):
        load_dataset("image_folder", root, tmp_path / "cache", channels=1)


def test_image_folder_empty_class(tmp_path):
    root = tmp_path / "folder"
    make_image_folder(root)
    (root / "train" / "emu").mkdir()
    (root / "test" / "emu").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        load_dataset("image_folder", root, tmp_path / "cache", channels=1)


def test_locate_image_folder(tmp_path):
    root = tmp_path / "folder"
    with pytest.raises(DatasetNotFoundError) as err:
        locate_dataset("image_folder", root, download=True)
    assert str(root.resolve() / "train") in str(err.value)
    make_image_folder(root)
    locate_dataset("image_folder", root, download=False)


def test_locate_mnist_and_cifar(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte"):
        locate_dataset("mnist", tmp_path, download=False)
    with pytest.raises(DatasetNotFoundError, match="cifar10-jpg.tar.gz"):
        locate_dataset("cifar10", tmp_path, download=False)
    # With download allowed, a missing dataset is not an error for the cheap check.
    locate_dataset("mnist", tmp_path, download=True)
    locate_dataset("cifar10", tmp_path, download=True)
    make_mnist(tmp_path)
    make_cifar_tarball(tmp_path)
    locate_dataset("mnist", tmp_path, download=False)
    locate_dataset("cifar10", tmp_path, download=False)
    assert not (tmp_path / "FashionMNIST").exists()


def test_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="data='svhn' is not a data option: one of .*'mnist'"):
        load_dataset("svhn", tmp_path, tmp_path / "cache")


# --- cifar10 ----------------------------------------------------------------------------------


def check_cifar(data: ImageData) -> None:
    classes = sorted(CIFAR_COLOURS)
    assert data.classes == classes
    assert data.train.x.shape == (6, 32, 32, 3) and data.train.x.dtype == np.uint8
    assert data.test.x.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(data.train.y, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(data.test.y, [0, 1, 2])
    for split in (data.train, data.test):
        for x, y in zip(split.x, split.y, strict=True):
            colour = np.array(CIFAR_COLOURS[classes[y]])
            assert np.abs(x.astype(int) - colour).max() <= 8  # JPEG is lossy


def test_cifar10_tarball(tmp_path, monkeypatch):
    root, cache = tmp_path / "data", tmp_path / "cache"
    make_cifar_tarball(root)
    before = snapshot(root)
    check_cifar(load_dataset("cifar10", root, cache, download=False))
    assert snapshot(root) == before, "the tarball must be read in place, not extracted"

    (root / "cifar10-jpg.tar.gz").unlink()
    forbid_decoding(monkeypatch)
    check_cifar(load_dataset("cifar10", root, cache, download=False))


def test_cifar10_extracted_folder_preferred_over_tarball(tmp_path):
    root = tmp_path / "data"
    make_cifar_tarball(root)
    with tarfile.open(root / "cifar10-jpg.tar.gz") as tar:
        tar.extractall(root, filter="data")
    (root / "cifar10-jpg" / "train" / "bird" / "0001.jpg").unlink()
    data = load_dataset("cifar10", root, tmp_path / "cache", download=False)
    assert data.classes == sorted(CIFAR_COLOURS)
    np.testing.assert_array_equal(data.train.y, [0, 0, 1, 2, 2])


def test_cifar10_missing(tmp_path, monkeypatch):
    import torchvision.datasets

    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", root, tmp_path / "cache", download=False)
    message = str(err.value)
    for expected in (str(root.resolve()), "cifar-10-batches-py", "cifar10-jpg.tar.gz", "DATA_DIR"):
        assert expected in message

    def offline(self):
        raise RuntimeError("offline")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    before = sorted(root.rglob("*")) if root.exists() else []
    with pytest.raises(DatasetNotFoundError, match="download failed") as err:
        load_dataset("cifar10", root, tmp_path / "cache", download=True)
    assert "set data.download=true" not in str(err.value)
    assert (sorted(root.rglob("*")) if root.exists() else []) == before


# --- real data (opt-in by availability) -------------------------------------------------------


@pytest.mark.real_data
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_mnist(tmp_path, name):
    folder = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name]
    if not (SHARED_DATA / folder / "raw").is_dir():
        pytest.skip(f"no real data at {SHARED_DATA / folder / 'raw'}")
    data = load_dataset(name, SHARED_DATA, tmp_path, download=False)
    assert data.train.x.shape == (60000, 28, 28, 1)
    assert data.test.x.shape == (10000, 28, 28, 1)
    assert data.train.x.dtype == np.uint8
    for split in (data.train, data.test):
        assert split.y.min() == 0 and split.y.max() == 9


@pytest.mark.real_data  # ~12 s on 2 cores, under the ~15 s bar for `slow`
def test_real_cifar10_tarball(tmp_path):
    if not (SHARED_DATA / "cifar10-jpg.tar.gz").is_file():
        pytest.skip(f"no real data at {SHARED_DATA / 'cifar10-jpg.tar.gz'}")
    data = load_dataset("cifar10", SHARED_DATA, tmp_path, download=False)
    assert data.train.x.shape == (50000, 32, 32, 3)
    assert data.test.x.shape == (10000, 32, 32, 3)
    assert data.train.x.dtype == np.uint8
    assert data.classes == list(CIFAR10_CLASSES)
    for split in (data.train, data.test):
        assert split.y.min() == 0 and split.y.max() == 9
        assert (np.bincount(split.y) == len(split.y) // 10).all()

"""Image-classification datasets as decoded uint8 arrays, cached as .npy files."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.error import URLError

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

# Bump when the decoded output for the same source changes, so old caches are ignored.
CACHE_VERSION = "1"

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_CLASSES = (
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
)
_SPLITS = ("train", "test")
_MODES = {1: "L", 3: "RGB"}
_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
_DOWNLOAD_ERRORS = (URLError, OSError, RuntimeError)
_FIX = (
    "Fix: put the files there, or point data.root=/path/to/data (or the DATA_DIR "
    "environment variable) at a directory that holds them."
)

Size = tuple[int, int]
# split -> class name -> [(file name, decoded image)]
_Found = dict[str, dict[str, list[tuple[str, np.ndarray]]]]


@dataclass(frozen=True, eq=False)
class Split:
    """One split: images (N, H, W, C) uint8 and labels (N,) int64."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.x.dtype != np.uint8 or self.x.ndim != 4:
            raise ValueError(f"x must be uint8 (N, H, W, C), got {self.x.dtype} {self.x.shape}")
        if self.y.dtype != np.int64 or self.y.shape != self.x.shape[:1]:
            raise ValueError(
                f"y must be int64 of shape ({len(self.x)},), got {self.y.dtype} {self.y.shape}"
            )


@dataclass(frozen=True)
class ImageData:
    """A dataset's train and test splits plus its class names (label i is classes[i])."""

    train: Split
    test: Split
    classes: list[str]

    def __post_init__(self) -> None:
        for name, split in (("train", self.train), ("test", self.test)):
            if len(split.y) and not 0 <= split.y.min() <= split.y.max() < len(self.classes):
                raise ValueError(f"{name} labels fall outside 0..{len(self.classes) - 1}")


class DatasetNotFoundError(RuntimeError):
    """The dataset's files are not where they were expected and cannot be downloaded."""


def load(
    name: str,
    root: str | Path,
    cache_dir: str | Path,
    *,
    download: bool = True,
    channels: int | None = None,
    image_size: Sequence[int] | None = None,
) -> ImageData:
    """Load dataset `name` (a key of LOADERS) as uint8 arrays, decoding once and caching."""
    loader = _lookup(LOADERS, name)
    channels = _check_channels(channels)
    size = _check_size(image_size)
    root = Path(root).expanduser().resolve()
    cache = _cache_path(name, root, Path(cache_dir).expanduser(), channels, size)
    data = _read_cache(cache)
    if data is not None:
        log.debug("Loaded %s from cache %s", name, cache)
        return data
    log.info("Decoding %s from %s (cached afterwards in %s)", name, root, cache)
    data = loader(root, download=download, channels=channels, image_size=size)
    meta = {"source": str(root), "channels": channels, "image_size": size}
    _write_cache(cache, data, meta)
    return data


def locate(name: str, root: str | Path, *, download: bool) -> None:
    """Check, without decoding, that `name` is under root or downloadable; else raise."""
    _lookup(_LOCATORS, name)(Path(root).expanduser().resolve(), download=download)


def _lookup(registry: dict[str, Callable], name: str) -> Callable:
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(registry)}") from None


def _check_channels(channels: int | None) -> int | None:
    if channels is not None and channels not in _MODES:
        raise ValueError(f"channels must be 1 or 3 (or None), got {channels!r}")
    return channels


def _check_size(image_size: Sequence[int] | None) -> Size | None:
    if image_size is None:
        return None
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be (height, width) of positive ints, got {image_size!r}")
    return size  # type: ignore[return-value]


# --- cache ------------------------------------------------------------------------------------


def _cache_path(
    name: str, root: Path, cache_dir: Path, channels: int | None, size: Size | None
) -> Path:
    ident = json.dumps([name, str(root), channels, size, CACHE_VERSION])
    key = hashlib.sha1(ident.encode()).hexdigest()[:12]
    return cache_dir / f"{name}-{key}"


def _read_cache(path: Path) -> ImageData | None:
    try:
        meta = json.loads((path / "classes.json").read_text())
        arrays = {k: np.load(path / f"{k}.npy", allow_pickle=False) for k in _ARRAYS}
        return ImageData(
            train=Split(arrays["train_x"], arrays["train_y"]),
            test=Split(arrays["test_x"], arrays["test_y"]),
            classes=[str(c) for c in meta["classes"]],
        )
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("Ignoring unreadable dataset cache %s (%s); decoding again", path, e)
        return None


def _write_cache(path: Path, data: ImageData, meta: dict) -> None:
    arrays = {
        "train_x": data.train.x,
        "train_y": data.train.y,
        "test_x": data.test.x,
        "test_y": data.test.y,
    }
    try:
        path.mkdir(parents=True, exist_ok=True)
        for key, arr in arrays.items():
            _atomic_write(path / f"{key}.npy", partial(np.save, arr=arr, allow_pickle=False))
        # Written last: its presence marks the cache as complete.
        text = json.dumps({"classes": data.classes, **meta}, indent=1)
        _atomic_write(path / "classes.json", lambda f: f.write(text.encode()))
    except OSError as e:
        log.warning("Could not write dataset cache %s (%s); continuing without it", path, e)


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a shared cache should stay readable
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --- decoding helpers -------------------------------------------------------------------------


def _to_array(im: Image.Image, mode: str, size: Size | None) -> np.ndarray:
    im = im.convert(mode)
    if size is not None and im.size != (size[1], size[0]):
        im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _decode(src: Path | bytes, where: str, mode: str, size: Size | None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            return _to_array(im, mode, size)
    except OSError as e:  # includes PIL.UnidentifiedImageError and truncated files
        raise ValueError(f"Cannot read image {where}: {e}") from e


def _convert(x: np.ndarray, channels: int | None, size: Size | None) -> np.ndarray:
    """Convert already-decoded images to the requested channels and size, if they differ."""
    if (channels in (None, x.shape[3])) and (size in (None, x.shape[1:3])):
        return x
    mode = _MODES[channels or x.shape[3]]
    images = (Image.fromarray(img[..., 0] if img.shape[2] == 1 else img) for img in x)
    return np.stack([_to_array(im, mode, size) for im in images])


def _is_image(name: str) -> bool:
    return not name.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS


def _assemble(found: _Found, source: str, size: Size | None) -> ImageData:
    """Turn {split: {class: [(file, image)]}} into ImageData with sorted, deterministic order."""
    classes = sorted(found["train"])
    if not classes:
        raise ValueError(f"No class folders with images found under {source}/train")
    if set(found["test"]) != set(classes):
        raise ValueError(
            f"train and test class folders differ under {source}: "
            f"train has {classes}, test has {sorted(found['test'])}"
        )
    splits = {}
    for split in _SPLITS:
        images, labels, names = [], [], []
        for label, cls in enumerate(classes):
            items = sorted(found[split][cls], key=lambda item: item[0])
            if not items:
                raise ValueError(f"Class folder {source}/{split}/{cls} has no images")
            images += [img for _, img in items]
            names += [f"{split}/{cls}/{fname}" for fname, _ in items]
            labels += [label] * len(items)
        shapes = {img.shape for img in images}
        if len(shapes) > 1:
            first = images[0].shape
            other = next(i for i, img in enumerate(images) if img.shape != first)
            raise ValueError(
                f"Images under {source} differ in size ({names[0]} is {first[:2]}, "
                f"{names[other]} is {images[other].shape[:2]}); "
                "set data.image_size=[H,W] to resize them all"
            )
        splits[split] = Split(np.stack(images), np.asarray(labels, dtype=np.int64))
    return ImageData(train=splits["train"], test=splits["test"], classes=classes)


def _read_image_dir(root: Path, mode: str, size: Size | None) -> ImageData:
    found: _Found = {}
    for split in _SPLITS:
        class_dirs = sorted(
            p for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        found[split] = {
            d.name: [
                (f.name, _decode(f, str(f), mode, size))
                for f in sorted(d.iterdir())
                if f.is_file() and _is_image(f.name)
            ]
            for d in class_dirs
        }
    return _assemble(found, str(root), size)


def _read_image_tar(path: Path, mode: str, size: Size | None) -> ImageData:
    found: _Found = {split: {} for split in _SPLITS}
    with tarfile.open(path, "r:*") as tar:
        # Stream members in archive order: random access into a gzip stream rereads it each time.
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if len(parts) < 2 or parts[-1].startswith(".") or parts[-2].startswith("."):
                continue
            if member.isdir() and parts[-2] in _SPLITS:
                found[parts[-2]].setdefault(parts[-1], [])
            elif member.isfile() and len(parts) >= 3 and parts[-3] in _SPLITS:
                if not _is_image(parts[-1]):
                    continue
                f = tar.extractfile(member)
                assert f is not None  # regular files always have a payload
                img = _decode(f.read(), f"{path}:{member.name}", mode, size)
                found[parts[-3]].setdefault(parts[-2], []).append((parts[-1], img))
    return _assemble(found, str(path), size)


# --- mnist / fashion_mnist --------------------------------------------------------------------


def _idx_not_found(tv_name: str, root: Path, reason: str) -> DatasetNotFoundError:
    raw = root / tv_name / "raw"
    return DatasetNotFoundError(
        f"{tv_name} not found: {reason}. Expected the IDX files in {raw}: "
        f"{', '.join(MNIST_FILES)} (torchvision's layout). {_FIX} "
        "Or set data.download=true on a machine with internet access."
    )


def _locate_idx(tv_name: str, root: Path, *, download: bool) -> list[str]:
    raw = root / tv_name / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing and not download:
        raise _idx_not_found(tv_name, root, f"missing {', '.join(missing)} and download=False")
    return missing


def _load_idx(
    tv_name: str, root: Path, *, download: bool, channels: int | None, image_size: Size | None
) -> ImageData:
    missing = _locate_idx(tv_name, root, download=download)
    import torchvision.datasets  # slow import, only needed on a cache miss

    cls = getattr(torchvision.datasets, tv_name)
    # download=True only when files are missing, so torchvision never touches a complete root.
    try:
        sets = [cls(str(root), train=train, download=bool(missing)) for train in (True, False)]
    except _DOWNLOAD_ERRORS as e:
        if missing:
            raise _idx_not_found(tv_name, root, f"download failed ({e})") from e
        raise ValueError(f"Cannot read {tv_name} IDX files in {root / tv_name / 'raw'}: {e}") from e
    except AssertionError as e:  # torchvision asserts on a bad IDX header
        raise ValueError(f"Bad IDX header in {root / tv_name / 'raw'}: {e}") from e
    train, test = (
        Split(
            _convert(ds.data.numpy()[..., None], channels, image_size),
            ds.targets.numpy().astype(np.int64),
        )
        for ds in sets
    )
    return ImageData(train=train, test=test, classes=list(sets[0].classes))


# --- cifar10 ----------------------------------------------------------------------------------


def _cifar10_not_found(root: Path, reason: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"CIFAR-10 not found under {root}: {reason}. Accepted layouts, in order of preference:\n"
        f"  {root}/cifar-10-batches-py/  (torchvision's download layout)\n"
        f"  {root}/cifar10-jpg/{{train,test}}/<class>/*.jpg\n"
        f"  {root}/cifar10-jpg.tar.gz  (that same layout inside; read in place)\n"
        f"{_FIX} Or pass download=True where there is internet access."
    )


def _cifar10_layout(root: Path) -> tuple[Path, Callable[..., ImageData]] | None:
    layouts = (
        (root / "cifar-10-batches-py", Path.is_dir, _read_cifar10_batches),
        (root / "cifar10-jpg", Path.is_dir, _read_image_dir),
        (root / "cifar10-jpg.tar.gz", Path.is_file, _read_image_tar),
    )
    return next(((path, read) for path, exists, read in layouts if exists(path)), None)


def _read_cifar10_batches(path: Path, mode: str, size: Size | None) -> ImageData:
    import torchvision.datasets  # slow import, only needed on a cache miss

    try:
        sets = [
            torchvision.datasets.CIFAR10(str(path.parent), train=train, download=False)
            for train in (True, False)
        ]
    except RuntimeError as e:  # torchvision's MD5 check failed
        raise _cifar10_not_found(path.parent, f"{path} is incomplete or corrupt ({e})") from e
    return _cifar10_from_torchvision(sets, mode, size)


def _cifar10_from_torchvision(sets: list, mode: str, size: Size | None) -> ImageData:
    channels = next(c for c, m in _MODES.items() if m == mode)
    train, test = (
        Split(_convert(ds.data, channels, size), np.asarray(ds.targets, dtype=np.int64))
        for ds in sets
    )
    return ImageData(train=train, test=test, classes=list(sets[0].classes))


def _locate_cifar10(root: Path, *, download: bool) -> None:
    if _cifar10_layout(root) is None and not download:
        raise _cifar10_not_found(root, "none of the accepted layouts exists and download=False")


def _load_cifar10(
    root: Path, *, download: bool, channels: int | None, image_size: Size | None
) -> ImageData:
    mode = _MODES[channels or 3]
    layout = _cifar10_layout(root)
    if layout is not None:
        path, read = layout
        data = read(path, mode, image_size)
        if tuple(data.classes) != CIFAR10_CLASSES:
            log.warning(
                "CIFAR-10 at %s has classes %s, not %s; labels follow the sorted folder names",
                path,
                data.classes,
                list(CIFAR10_CLASSES),
            )
        return data
    _locate_cifar10(root, download=download)
    import torchvision.datasets  # slow import, only needed on a cache miss

    try:
        sets = [
            torchvision.datasets.CIFAR10(str(root), train=train, download=True)
            for train in (True, False)
        ]
    except _DOWNLOAD_ERRORS as e:
        raise _cifar10_not_found(root, f"download failed ({e})") from e
    return _cifar10_from_torchvision(sets, mode, image_size)


# --- image_folder -----------------------------------------------------------------------------


def _locate_image_folder(root: Path, *, download: bool) -> None:
    missing = [str(root / split) for split in _SPLITS if not (root / split).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"image_folder dataset not found: missing directory {' and '.join(missing)}. "
            f"Expected {root}/train/<class>/<images> and {root}/test/<class>/<images> "
            f"(png, jpg, jpeg, bmp, gif, webp, tif). {_FIX}"
        )


def _load_image_folder(
    root: Path, *, download: bool, channels: int | None, image_size: Size | None
) -> ImageData:
    if channels is None:
        raise ValueError("image_folder needs channels=1 (grey) or 3 (RGB); set data.channels")
    _locate_image_folder(root, download=download)
    return _read_image_dir(root, _MODES[channels], image_size)


LOADERS: dict[str, Callable[..., ImageData]] = {
    "mnist": partial(_load_idx, "MNIST"),
    "fashion_mnist": partial(_load_idx, "FashionMNIST"),
    "cifar10": _load_cifar10,
    "image_folder": _load_image_folder,
}
_LOCATORS: dict[str, Callable[..., object]] = {
    "mnist": partial(_locate_idx, "MNIST"),
    "fashion_mnist": partial(_locate_idx, "FashionMNIST"),
    "cifar10": _locate_cifar10,
    "image_folder": _locate_image_folder,
}

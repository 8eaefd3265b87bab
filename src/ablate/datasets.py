"""Image-classification datasets as decoded uint8 arrays, cached as .npy files."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import struct
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.error import URLError

import numpy as np
from filelock import FileLock, Timeout
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
_REDOWNLOAD = (
    "Fix: delete it and download it again (data.download=true on a machine with internet "
    "access), or replace it with an intact copy; ablate never modifies files under data.root."
)
_META = "classes.json"  # cache metadata; written last, so its presence marks a complete entry

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


# A subclass so that every caller that turns a missing dataset into a one-line error (exit
# code 2, before training) does the same for a damaged one.
class DatasetCorruptError(DatasetNotFoundError):
    """A dataset file exists but is truncated or unreadable; the message names it and the fix."""


def load(
    name: str,
    root: str | Path,
    cache_dir: str | Path,
    *,
    download: bool = True,
    channels: int | None = None,
    image_size: Sequence[int] | None = None,
) -> ImageData:
    """Load dataset `name` (a key of LOADERS) as uint8 arrays, decoded once into a verified cache."""
    loader = _lookup(LOADERS, name)
    channels = _check_channels(channels)
    size = _check_size(image_size)
    root = Path(root).expanduser().resolve()
    cache = _cache_path(name, root, Path(cache_dir).expanduser(), channels, size)
    data, _ = _read_cache(cache)  # no lock on a hit: readers never wait for each other
    if data is not None:
        log.debug("Loaded %s from cache %s", name, cache)
        return data
    with _build_lock(cache):
        # Read again under the lock: another process may have built the entry meanwhile, and a
        # problem seen without the lock may have been that process's write in progress.
        data, problem = _read_cache(cache)
        if data is not None:
            log.info("Loaded %s from cache %s, written by another process", name, cache)
            return data
        if problem:
            log.warning("Rebuilding dataset cache %s: %s", cache, problem)
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


def _digest(arr: np.ndarray) -> str:
    """sha256 of an array's bytes."""
    # sha256 over blake2b: with SHA-NI it hashes MNIST's 47 MB train_x in 0.026 s, blake2b 0.05 s.
    return hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()


def _read_cache(path: Path) -> tuple[ImageData | None, str | None]:
    """(data, None) for a verified entry, else (None, why it is unusable; None if just absent)."""
    try:
        meta = json.loads((path / _META).read_text())
    except (FileNotFoundError, NotADirectoryError):
        leftovers = path.is_dir() and any(path.iterdir())
        return None, "incomplete (no classes.json; an interrupted write?)" if leftovers else None
    except (OSError, ValueError) as e:
        return None, f"unreadable {_META} ({e})"
    try:
        found = meta.get("cache_version") if isinstance(meta, dict) else None
        if found is None:
            return None, "written by an older ablate (no cache version or checksums)"
        if found != CACHE_VERSION:
            return None, f"cache version {found!r}, expected {CACHE_VERSION!r}"
        arrays = {}
        for key in _ARRAYS:
            arrays[key], problem = _read_array(path / f"{key}.npy", meta["arrays"][key])
            if problem:
                return None, problem
        return ImageData(
            train=Split(arrays["train_x"], arrays["train_y"]),
            test=Split(arrays["test_x"], arrays["test_y"]),
            classes=[str(c) for c in meta["classes"]],
        ), None
    except (KeyError, TypeError, ValueError) as e:
        return None, f"malformed {_META} or arrays ({type(e).__name__}: {e})"


def _read_array(path: Path, expect: dict) -> tuple[np.ndarray, str | None]:
    """Load one cached array and check its file size and checksum against the metadata."""
    try:
        size = path.stat().st_size
        if size != expect["bytes"]:
            return np.empty(0), f"{path.name} has {size} bytes, expected {expect['bytes']}"
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        return np.empty(0), f"cannot read {path.name} ({e})"
    if _digest(arr) != expect["sha256"]:
        return np.empty(0), f"{path.name} fails its checksum"
    return arr, None


def _write_cache(path: Path, data: ImageData, meta: dict) -> None:
    arrays = {
        "train_x": data.train.x,
        "train_y": data.train.y,
        "test_x": data.test.x,
        "test_y": data.test.y,
    }
    try:
        path.mkdir(parents=True, exist_ok=True)
        # Unlinked first, so a lock-free reader sees an incomplete entry, never old metadata
        # describing new arrays.
        (path / _META).unlink(missing_ok=True)
        checks = {}
        for key, arr in arrays.items():
            file = path / f"{key}.npy"
            _atomic_write(file, partial(np.save, arr=arr, allow_pickle=False))
            checks[key] = {"bytes": file.stat().st_size, "sha256": _digest(arr)}
        full = {"classes": data.classes, "cache_version": CACHE_VERSION, **meta, "arrays": checks}
        text = json.dumps(full, indent=1)
        _atomic_write(path / _META, lambda f: f.write(text.encode()))
    except OSError as e:
        log.warning("Could not write dataset cache %s (%s); continuing without it", path, e)


@contextlib.contextmanager
def _build_lock(cache: Path) -> Iterator[None]:
    """Hold `<cache>.lock` so that one process decodes an entry while the others wait for it."""
    path = cache.with_name(cache.name + ".lock")
    lock = FileLock(path)
    locked = _acquire(lock, cache)
    try:
        yield
    finally:
        if locked:
            # Removed while still held, so the cache dir holds only entries. A waiter that then
            # locks the unlinked file sees st_nlink == 0 and retries on a new one (filelock 4
            # checks this); with an older filelock the worst case is a second decode, because
            # correctness never rests on the lock: every file is replaced atomically, with the
            # same content whoever writes it, and verified on read.
            with contextlib.suppress(OSError):
                path.unlink()
            lock.release()


def _acquire(lock: FileLock, cache: Path) -> bool:
    """Wait for the lock; False (with a warning) if it cannot be created, e.g. a read-only dir."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("Waiting for another process to finish caching %s", cache)
            lock.acquire()
    except OSError as e:
        log.warning("Could not lock dataset cache %s (%s); decoding without the lock", cache, e)
        return False
    return True


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


# What PIL raises for garbage or truncated files (OSError covers UnidentifiedImageError).
_IMAGE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


def _decode(src: Path | bytes, where: str, mode: str, size: Size | None, fix: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            return _to_array(im, mode, size)
    except _IMAGE_ERRORS as e:
        raise DatasetCorruptError(
            f"Cannot read image {where}: it is corrupt or truncated ({type(e).__name__}: {e}). {fix}"
        ) from e


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


_FIX_IMAGE = (
    "Fix: delete that file or replace it with an intact copy "
    "(ablate never modifies files under data.root)."
)


def _read_image_dir(root: Path, mode: str, size: Size | None) -> ImageData:
    found: _Found = {}
    for split in _SPLITS:
        class_dirs = sorted(
            p for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        found[split] = {
            d.name: [
                (f.name, _decode(f, str(f), mode, size, _FIX_IMAGE))
                for f in sorted(d.iterdir())
                if f.is_file() and _is_image(f.name)
            ]
            for d in class_dirs
        }
    return _assemble(found, str(root), size)


def _read_image_tar(path: Path, mode: str, size: Size | None) -> ImageData:
    found: _Found = {split: {} for split in _SPLITS}
    fix = f"Fix: download {path.name} again or replace it with an intact copy."
    try:
        with tarfile.open(path, "r:*") as tar:
            # Stream members in archive order: random access into gzip rereads the stream.
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
                    img = _decode(f.read(), f"{path}:{member.name}", mode, size, fix)
                    found[parts[-3]].setdefault(parts[-2], []).append((parts[-1], img))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DatasetCorruptError(
            f"Cannot read archive {path}: it is truncated or corrupt ({type(e).__name__}: {e}). {fix}"
        ) from e
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
    if not missing:
        _check_idx(raw)
    return missing


def _check_idx(raw: Path) -> None:
    """Raise DatasetCorruptError unless each IDX file's size matches its header's counts."""
    for prefix in ("train", "t10k"):
        images = _idx_count(raw / f"{prefix}-images-idx3-ubyte", ndim=3)
        labels = _idx_count(raw / f"{prefix}-labels-idx1-ubyte", ndim=1)
        if images != labels:
            raise DatasetCorruptError(
                f"{raw}/{prefix}-images-idx3-ubyte holds {images} images but "
                f"{prefix}-labels-idx1-ubyte holds {labels} labels: one of them is damaged or "
                "from another copy. Fix: delete both and download them again (data.download=true "
                "on a machine with internet access), or replace them with an intact pair."
            )


def _idx_count(path: Path, ndim: int) -> int:
    """The item count in an IDX file of uint8 (magic 0x0000080<ndim>), checked against its size."""
    header = 4 + 4 * ndim
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(header)
    if len(head) < header or head[:3] != b"\0\0\x08" or head[3] != ndim:
        raise DatasetCorruptError(
            f"{path} is not an IDX file of {ndim}-d uint8 data: expected a {header}-byte header "
            f"starting 0000080{ndim}, found {size} bytes starting {head[:4].hex() or '(empty)'}. "
            f"{_REDOWNLOAD}"
        )
    dims = struct.unpack(f">{ndim}I", head[4:])
    expected = header + math.prod(dims)
    if size != expected:
        shape = " x ".join(map(str, dims))
        raise DatasetCorruptError(
            f"{path} is {'truncated' if size < expected else 'too long'}: its header says "
            f"{shape}, so expected {expected} bytes, found {size}. {_REDOWNLOAD}"
        )
    return dims[0]


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
        raise DatasetCorruptError(
            f"Cannot read the {tv_name} IDX files in {root / tv_name / 'raw'} ({e}). {_REDOWNLOAD}"
        ) from e
    except AssertionError as e:  # torchvision asserts on a bad IDX header
        raise DatasetCorruptError(
            f"Bad IDX header in {root / tv_name / 'raw'} ({e}). {_REDOWNLOAD}"
        ) from e
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

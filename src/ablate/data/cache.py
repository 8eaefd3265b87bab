"""The decoded-dataset cache: uint8 .npy arrays with checksums, built once under one lock.

A source (`ablate.data.sources.*`) decodes a dataset; `load` keeps the result under `data.cache_dir`,
keyed by the source's name, root, channels and size, and verifies it on every read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from ablate.data.decode import MODES, ImageData, Size, Split
from ablate.run.atomic import write_atomic, write_bytes_atomic

log = logging.getLogger(__name__)

Reader = Callable[..., ImageData]  # read(root, *, download, channels, image_size) -> ImageData

# Bump when the decoded output for the same source changes, so old caches are ignored.
CACHE_VERSION = "1"
_ARRAYS = ("train_x", "train_y", "test_x", "test_y")
_META = "classes.json"  # cache metadata; written last, so its presence marks a complete entry


def load(
    name: str,
    read: Reader,
    root: str | Path,
    cache_dir: str | Path,
    *,
    download: bool = True,
    channels: int | None = None,
    image_size: Sequence[int] | None = None,
) -> ImageData:
    """Dataset `name` as uint8 arrays: decoded once by `read(root, ...)` into a verified cache."""
    channels = _check_channels(channels)
    size = _check_size(image_size)
    root = Path(root).expanduser().resolve()
    cache = _cache_path(name, _source(read), root, Path(cache_dir).expanduser(), channels, size)
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
        data = read(root, download=download, channels=channels, image_size=size)
        meta = {"source": str(root), "channels": channels, "image_size": size}
        _write_cache(cache, data, meta)
    return data


def _check_channels(channels: int | None) -> int | None:
    if channels is not None and channels not in MODES:
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


def _source(read: Reader) -> str:
    """Which decoder `read` is (`ablate.data.sources.mnist.FashionMNIST` for its bound classmethod)."""
    owner = getattr(read, "__self__", read)
    return f"{owner.__module__}.{owner.__qualname__}"


def _cache_path(
    name: str, source: str, root: Path, cache_dir: Path, channels: int | None, size: Size | None
) -> Path:
    # The decoder is part of the key, not only the dataset's name (a label a config can change):
    # data=fashion_mnist with data.dataset=mnist must not read or overwrite MNIST's arrays.
    ident = json.dumps([name, source, str(root), channels, size, CACHE_VERSION])
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
            write_atomic(file, partial(np.save, arr=arr, allow_pickle=False))
            checks[key] = {"bytes": file.stat().st_size, "sha256": _digest(arr)}
        full = {"classes": data.classes, "cache_version": CACHE_VERSION, **meta, "arrays": checks}
        text = json.dumps(full, indent=1)
        write_bytes_atomic(path / _META, text.encode())
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

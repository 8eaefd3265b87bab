"""Decoding images into uint8 arrays (Split, ImageData) and the errors a missing or damaged dataset raises."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.error import URLError

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "test")
MODES = {1: "L", 3: "RGB"}
DOWNLOAD_ERRORS = (URLError, OSError, RuntimeError)
FIX_PATHS = (
    "Fix: put the files there, or point data.root=/path/to/data (or the DATA_DIR "
    "environment variable) at a directory that holds them."
)
FIX_REDOWNLOAD = (
    "Fix: delete it and download it again (data.download=true on a machine with internet "
    "access), or replace it with an intact copy; ablate never modifies files under data.root."
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


class DataSizeError(ValueError):
    """Config values the loaded data cannot satisfy (e.g. a batch larger than the training split)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


# A subclass so that every caller that turns a missing dataset into a one-line error (exit
# code 2, before training) does the same for a damaged one.
class DatasetCorruptError(DatasetNotFoundError):
    """A dataset file exists but is truncated or unreadable; the message names it and the fix."""


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


def convert(x: np.ndarray, channels: int | None, size: Size | None) -> np.ndarray:
    """Convert already-decoded images to the requested channels and size, if they differ."""
    if (channels in (None, x.shape[3])) and (size in (None, x.shape[1:3])):
        return x
    mode = MODES[channels or x.shape[3]]
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
    for split in SPLITS:
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


def read_image_dir(root: Path, mode: str, size: Size | None) -> ImageData:
    found: _Found = {}
    for split in SPLITS:
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


def read_image_tar(path: Path, mode: str, size: Size | None) -> ImageData:
    found: _Found = {split: {} for split in SPLITS}
    fix = f"Fix: download {path.name} again or replace it with an intact copy."
    try:
        with tarfile.open(path, "r:*") as tar:
            # Stream members in archive order: random access into gzip rereads the stream.
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if len(parts) < 2 or parts[-1].startswith(".") or parts[-2].startswith("."):
                    continue
                if member.isdir() and parts[-2] in SPLITS:
                    found[parts[-2]].setdefault(parts[-1], [])
                elif member.isfile() and len(parts) >= 3 and parts[-3] in SPLITS:
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

"""CIFAR-10 from torchvision's batches, a JPEG image folder, or that folder as a tarball (`conf/data/cifar10.yaml`)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ablate.data.datamodule import ImageDataModule
from ablate.data.decode import (
    DOWNLOAD_ERRORS,
    FIX_PATHS,
    MODES,
    DatasetNotFoundError,
    ImageData,
    Size,
    Split,
    convert,
    read_image_dir,
    read_image_tar,
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


# --- cifar10 ----------------------------------------------------------------------------------


log = logging.getLogger(__name__)


def _cifar10_not_found(root: Path, reason: str, download: bool = False) -> DatasetNotFoundError:
    online = "" if download else " Or set data.download=true on a machine with internet access."
    return DatasetNotFoundError(
        f"CIFAR-10 not found under {root}: {reason}. Accepted layouts, in order of preference:\n"
        f"  {root}/cifar-10-batches-py/  (torchvision's download layout)\n"
        f"  {root}/cifar10-jpg/{{train,test}}/<class>/*.jpg\n"
        f"  {root}/cifar10-jpg.tar.gz  (that same layout inside; read in place)\n"
        f"{FIX_PATHS}{online}"
    )


def _cifar10_layout(root: Path) -> tuple[Path, Callable[..., ImageData]] | None:
    layouts = (
        (root / "cifar-10-batches-py", Path.is_dir, _read_cifar10_batches),
        (root / "cifar10-jpg", Path.is_dir, read_image_dir),
        (root / "cifar10-jpg.tar.gz", Path.is_file, read_image_tar),
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
    channels = next(c for c, m in MODES.items() if m == mode)
    train, test = (
        Split(convert(ds.data, channels, size), np.asarray(ds.targets, dtype=np.int64))
        for ds in sets
    )
    return ImageData(train=train, test=test, classes=list(sets[0].classes))


def _locate_cifar10(root: Path, *, download: bool) -> None:
    if _cifar10_layout(root) is None and not download:
        raise _cifar10_not_found(root, "none of the accepted layouts exists and download=False")


def _load_cifar10(
    root: Path, *, download: bool, channels: int | None, image_size: Size | None
) -> ImageData:
    mode = MODES[channels or 3]
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

    # Downloaded into a temporary folder, moved under root only once complete.
    with tempfile.TemporaryDirectory(prefix="ablate-cifar10-") as tmp:
        try:
            for train in (True, False):
                torchvision.datasets.CIFAR10(tmp, train=train, download=True)
        except DOWNLOAD_ERRORS as e:
            reason = f"the download failed ({type(e).__name__}: {e}; offline?)"
            raise _cifar10_not_found(root, reason, download=True) from e
        root.mkdir(parents=True, exist_ok=True)
        shutil.move(Path(tmp) / "cifar-10-batches-py", root / "cifar-10-batches-py")
    return _read_cifar10_batches(root / "cifar-10-batches-py", mode, image_size)


class CIFAR10(ImageDataModule):
    """CIFAR-10 (Krizhevsky 2009) under <root>, in the first of the accepted layouts found."""

    name = "cifar10"
    images = {"train": 50000, "test": 10000}  # the official splits

    @classmethod
    def locate(cls, root: Path, *, download: bool) -> None:
        _locate_cifar10(root, download=download)

    @classmethod
    def read(
        cls, root: Path, *, download: bool, channels: int | None, image_size: Size | None
    ) -> ImageData:
        return _load_cifar10(root, download=download, channels=channels, image_size=image_size)

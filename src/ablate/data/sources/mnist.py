"""MNIST and Fashion-MNIST in torchvision's IDX layout (`conf/data/mnist.yaml`, `fashion_mnist.yaml`)."""

from __future__ import annotations

import math
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from ablate.data.datamodule import ImageDataModule
from ablate.data.decode import (
    DOWNLOAD_ERRORS,
    FIX_PATHS,
    FIX_REDOWNLOAD,
    DatasetCorruptError,
    DatasetNotFoundError,
    ImageData,
    Size,
    Split,
    convert,
)

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


# --- mnist / fashion_mnist --------------------------------------------------------------------


def _idx_not_found(
    tv_name: str, root: Path, reason: str, download: bool = False
) -> DatasetNotFoundError:
    raw = root / tv_name / "raw"
    online = "" if download else " Or set data.download=true on a machine with internet access."
    return DatasetNotFoundError(
        f"{tv_name} not found: {reason}. Expected the IDX files in {raw}: "
        f"{', '.join(MNIST_FILES)} (torchvision's layout). {FIX_PATHS}{online}"
    )


def _download_idx(tv_name: str, root: Path) -> None:
    """Download into a temporary folder and move the files under root only once all are complete."""
    import torchvision.datasets  # slow import, only needed to download

    cls = getattr(torchvision.datasets, tv_name)
    with tempfile.TemporaryDirectory(prefix=f"ablate-{tv_name}-") as tmp:
        try:
            for train in (True, False):
                cls(tmp, train=train, download=True)
        except DOWNLOAD_ERRORS as e:
            reason = f"the download failed ({type(e).__name__}: {e}; offline?)"
            raise _idx_not_found(tv_name, root, reason, download=True) from e
        raw = root / tv_name / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for name in MNIST_FILES:
            if not (raw / name).exists():
                shutil.move(Path(tmp) / tv_name / "raw" / name, raw / name)


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
            f"{FIX_REDOWNLOAD}"
        )
    dims = struct.unpack(f">{ndim}I", head[4:])
    expected = header + math.prod(dims)
    if size != expected:
        shape = " x ".join(map(str, dims))
        raise DatasetCorruptError(
            f"{path} is {'truncated' if size < expected else 'too long'}: its header says "
            f"{shape}, so expected {expected} bytes, found {size}. {FIX_REDOWNLOAD}"
        )
    return dims[0]


def _load_idx(
    tv_name: str, root: Path, *, download: bool, channels: int | None, image_size: Size | None
) -> ImageData:
    if _locate_idx(tv_name, root, download=download):  # missing files, download on
        _download_idx(tv_name, root)
    import torchvision.datasets  # slow import, only needed on a cache miss

    cls = getattr(torchvision.datasets, tv_name)
    try:  # download=False: torchvision never touches root
        sets = [cls(str(root), train=train, download=False) for train in (True, False)]
    except DOWNLOAD_ERRORS as e:
        raise DatasetCorruptError(
            f"Cannot read the {tv_name} IDX files in {root / tv_name / 'raw'} ({e}). {FIX_REDOWNLOAD}"
        ) from e
    except AssertionError as e:  # torchvision asserts on a bad IDX header
        raise DatasetCorruptError(
            f"Bad IDX header in {root / tv_name / 'raw'} ({e}). {FIX_REDOWNLOAD}"
        ) from e
    train, test = (
        Split(
            convert(ds.data.numpy()[..., None], channels, image_size),
            ds.targets.numpy().astype(np.int64),
        )
        for ds in sets
    )
    return ImageData(train=train, test=test, classes=list(sets[0].classes))


class MNIST(ImageDataModule):
    """MNIST (LeCun et al. 1998): the IDX files under <root>/MNIST/raw, downloaded there when online."""

    name = "mnist"
    images = {"train": 60000, "test": 10000}  # the official splits
    folder = "MNIST"  # torchvision's dataset class and folder name

    @classmethod
    def locate(cls, root: Path, *, download: bool) -> None:
        _locate_idx(cls.folder, root, download=download)

    @classmethod
    def read(
        cls, root: Path, *, download: bool, channels: int | None, image_size: Size | None
    ) -> ImageData:
        return _load_idx(
            cls.folder, root, download=download, channels=channels, image_size=image_size
        )


class FashionMNIST(MNIST):
    """Fashion-MNIST (Xiao et al. 2017): the IDX files under <root>/FashionMNIST/raw."""

    name = "fashion_mnist"
    folder = "FashionMNIST"

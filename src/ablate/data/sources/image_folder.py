"""Your own images: <root>/{train,test}/<class>/* (`conf/data/image_folder.yaml`)."""

from __future__ import annotations

from pathlib import Path

from ablate.data.datamodule import ImageDataModule
from ablate.data.decode import (
    FIX_PATHS,
    MODES,
    SPLITS,
    DatasetNotFoundError,
    ImageData,
    Size,
    read_image_dir,
)

# --- image_folder -----------------------------------------------------------------------------


def _locate_image_folder(root: Path, *, download: bool) -> None:
    missing = [str(root / split) for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise DatasetNotFoundError(
            f"image_folder dataset not found: missing directory {' and '.join(missing)}. "
            f"Expected {root}/train/<class>/<images> and {root}/test/<class>/<images> "
            f"(png, jpg, jpeg, bmp, gif, webp, tif). {FIX_PATHS}"
        )


def _load_image_folder(
    root: Path, *, download: bool, channels: int | None, image_size: Size | None
) -> ImageData:
    if channels is None:
        raise ValueError("image_folder needs channels=1 (grey) or 3 (RGB); set data.channels")
    _locate_image_folder(root, download=download)
    return read_image_dir(root, MODES[channels], image_size)


class ImageFolder(ImageDataModule):
    """An image folder with train/ and test/ splits; classes are the sorted folder names."""

    @classmethod
    def locate(cls, root: Path, *, download: bool) -> None:
        _locate_image_folder(root, download=download)

    @classmethod
    def read(
        cls, root: Path, *, download: bool, channels: int | None, image_size: Size | None
    ) -> ImageData:
        return _load_image_folder(root, download=download, channels=channels, image_size=image_size)

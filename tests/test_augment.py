"""Tests for the `aug` presets and ablate.data.augment: what each preset does, shapes, seeding."""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import functools
import pickle
import random
import warnings
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from ablate.data.augment import FAMILIES, BatchAugment, build_augment

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
PRESETS = ("none", "light", "strong")
PAIRS = [(preset, family) for preset in PRESETS for family in FAMILIES]
SIZE_FOR = {"digits": (28, 28, 1), "fashion": (28, 28, 1), "natural": (32, 32, 3)}


@functools.lru_cache
def aug_cfg(preset: str, height: int = 28, width: int = 28, channels: int = 1):
    """The `aug` node as the app sees it: composed by Hydra next to a `data` node."""
    overrides = [
        f"+aug={preset}",
        f"+data.image_size=[{height},{width}]",
        f"+data.channels={channels}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(overrides=overrides).aug


def build(preset: str, family: str, seed: int = 0, shape=None) -> BatchAugment | None:
    h, w, c = shape or SIZE_FOR[family]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # renamed/unknown albumentations args only warn
        return build_augment(aug_cfg(preset, h, w, c), family, seed)


def random_batch(n: int, shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def without_erasing(aug: BatchAugment) -> BatchAugment:
    for t in aug.transform.transforms:
        if isinstance(t, A.CoarseDropout):
            t.p = 0.0
    return aug


# --- construction -------------------------------------------------------------------------


@pytest.mark.parametrize(("preset", "family"), PAIRS)
def test_every_preset_builds_without_warnings(preset, family):
    aug = build(preset, family)
    if preset == "none":
        assert aug is None
    else:
        assert isinstance(aug, BatchAugment)
        assert isinstance(aug.transform.transforms, list)
        assert len(aug.transform.transforms) > 0


def test_unknown_family_names_the_allowed_ones():
    with pytest.raises(ValueError, match="digits.*fashion.*natural"):
        build_augment(aug_cfg("light"), "faces", seed=0)


def test_missing_or_null_pipeline_gives_none():
    assert build_augment(None, "digits", seed=0) is None
    assert build_augment({"digits": None}, "natural", seed=0) is None


def test_digits_presets_contain_no_flip():
    for preset in ("light", "strong"):
        names = {type(t).__name__ for t in build(preset, "digits").transform.transforms}
        assert not names & {"HorizontalFlip", "VerticalFlip", "Transpose", "D4", "RandomRotate90"}


def test_strong_adds_affine_blur_and_erasing_to_every_family():
    for family in FAMILIES:
        kinds = [type(t) for t in build("strong", family).transform.transforms]
        assert {A.Affine, A.GaussianBlur, A.CoarseDropout} <= set(kinds)
        assert kinds[-1] is A.CoarseDropout  # last, so erased pixels are exactly `fill`


# --- shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["light", "strong"])
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_shape_and_dtype_preserved(preset, family, shape):
    aug = build(preset, family, shape=shape)
    images = random_batch(6, shape)
    before = images.copy()
    out = aug(images)
    assert out.shape == images.shape
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(images, before)  # input untouched
    assert not np.array_equal(out, images)  # it did something


def test_rejects_non_batch_input():
    aug = build("light", "digits")
    with pytest.raises(ValueError, match="uint8"):
        aug(np.zeros((28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        aug(np.zeros((2, 28, 28, 1), np.float32))


def test_size_mismatch_is_reported():
    aug = build("light", "natural", shape=(32, 32, 3))  # crops to 32x32
    with pytest.raises(ValueError, match="image_size"):
        aug(random_batch(1, (40, 40, 3)))


# --- geometry: flips and shifts -----------------------------------------------------------


def flip_probe(n: int) -> np.ndarray:
    """Pairs of 28x28 images: a block left of centre, then a block above centre."""
    left = np.zeros((28, 28, 1), np.uint8)
    left[11:17, 2:8] = 255
    top = np.zeros((28, 28, 1), np.uint8)
    top[2:8, 11:17] = 255
    return np.stack([left, top] * n)


def mirrored(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: was the left block moved right of centre / the top block below centre?"""
    ys, xs = np.mgrid[0:28, 0:28]
    mass = out[..., 0].astype(float).sum(axis=(1, 2))
    assert (mass > 0).all()
    cx = (out[..., 0] * xs).sum(axis=(1, 2)) / mass
    cy = (out[..., 0] * ys).sum(axis=(1, 2)) / mass
    return cx[0::2] > 13.5, cy[1::2] > 13.5


def test_flip_probe_detects_flips():
    probe = flip_probe(4)
    h, v = mirrored(BatchAugment(A.Compose([A.HorizontalFlip(p=1)]), 0)(probe))
    assert h.all() and not v.any()
    h, v = mirrored(BatchAugment(A.Compose([A.VerticalFlip(p=1)]), 0)(probe))
    assert v.all() and not h.any()
    h, v = mirrored(probe)
    assert not h.any() and not v.any()


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_digits_never_flip(preset):
    # CoarseDropout may erase a whole block; this test is about geometry.
    aug = without_erasing(build(preset, "digits", seed=1))
    probe = flip_probe(150)
    out = aug(probe)
    assert not np.array_equal(out, probe)
    h, v = mirrored(out)
    assert not h.any() and not v.any()


@pytest.mark.parametrize("preset", ["light", "strong"])
def test_fashion_flips_horizontally_only(preset):
    aug = without_erasing(build(preset, "fashion", seed=1))
    h, v = mirrored(aug(flip_probe(150)))
    assert 0.35 < h.mean() < 0.65
    assert not v.any()


def test_natural_light_is_flip_plus_crop_within_4px():
    size = 32
    aug = build("light", "natural", seed=3, shape=(size, size, 3))
    image = random_batch(1, (size, size, 3), seed=7)[0]
    # Every output the preset may produce: optional mirror, then a zero-padded shift of <= 4 px
    # (a bigger one would match nothing).
    candidates, labels = [], []
    for flip in (False, True):
        padded = np.pad(image[:, ::-1] if flip else image, ((4, 4), (4, 4), (0, 0)))
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                candidates.append(padded[4 + dy : 4 + dy + size, 4 + dx : 4 + dx + size])
                labels.append((flip, dy, dx))
    candidates = np.stack(candidates)

    out = aug(np.repeat(image[None], 300, axis=0))
    found = []
    for o in out:
        hits = np.flatnonzero((candidates == o).all(axis=(1, 2, 3)))
        assert len(hits) == 1
        found.append(labels[hits[0]])
    flips, dys, dxs = zip(*found, strict=True)
    assert 0.38 < np.mean(flips) < 0.62
    assert set(dys) == set(range(-4, 5)) and set(dxs) == set(range(-4, 5))


# --- erasing ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_strong_erases_a_fraction_of_images(family):
    shape = SIZE_FOR[family]
    h, w = shape[:2]
    images = np.full((300, *shape), 200, np.uint8)
    # The centre is out of reach of affine/crop borders, so a 0 (the fill) there is an erasure.
    centre = (slice(None), slice(h // 3, h - h // 3), slice(w // 3, w - w // 3))

    erased = (build("strong", family, seed=2)(images)[centre] == 0).any(axis=(1, 2, 3))
    assert 0.1 < erased.mean() < 0.6

    assert not (without_erasing(build("strong", family, seed=2))(images)[centre] == 0).any()
    assert not (build("light", family, seed=2)(images)[centre] == 0).any()


# --- reproducibility ----------------------------------------------------------------------


def test_same_seed_same_stream_different_seed_differs():
    images = random_batch(16, (32, 32, 3))
    a, b, c = (build("strong", "natural", seed=s) for s in (11, 11, 12))
    np.random.seed(1)
    random.seed(1)
    a1, a2 = a(images), a(images)
    np.random.seed(2)  # global seeding must not matter
    random.seed(2)
    b1, b2 = b(images), b(images)
    assert a1.tobytes() == b1.tobytes() and a2.tobytes() == b2.tobytes()
    assert a1.tobytes() != a2.tobytes()  # the stream advances between calls
    assert c(images).tobytes() != a1.tobytes()


def test_reseed_restarts_the_stream_and_survives_pickling():
    images = random_batch(16, (28, 28, 1))
    aug = build("strong", "digits", seed=0)
    aug.reseed(5)
    first = aug(images)
    aug(images)
    aug.reseed(5)
    assert aug(images).tobytes() == first.tobytes()

    worker_copy = pickle.loads(pickle.dumps(aug))  # how a spawned DataLoader worker gets it
    worker_copy.reseed(5)
    assert worker_copy(images).tobytes() == first.tobytes()
    worker_copy.reseed(6)
    assert worker_copy(images).tobytes() != first.tobytes()


def test_transforms_draw_independently():
    # Compose(seed=s) alone seeds each transform with the same s, making these two flips coincide.
    aug = BatchAugment(A.Compose([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)], seed=4), 4)
    image = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    out = aug(np.repeat(image, 64, axis=0))
    views = {
        image[0].tobytes(): "none",
        image[0, :, ::-1].tobytes(): "h",
        image[0, ::-1].tobytes(): "v",
        image[0, ::-1, ::-1].tobytes(): "hv",
    }
    assert {views[o.tobytes()] for o in out} == {"none", "h", "v", "hv"}

"""The datamodule on generated arrays: seeded stratified split/subset, standardization, augmentation only on train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import patch_dataset_load
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.data.datamodule import ImageDataModule, stratified_pick
from ablate.data.loaders import channel_stats


@pytest.fixture
def fake_data(monkeypatch):
    """Patch datasets.load: 1,000 train / 200 test generated 8x8 RGB images."""
    return patch_dataset_load(monkeypatch, 1000, 200, 8)


def _dm(aug: str = "none", **kw) -> ImageDataModule:
    aug_cfg = OmegaConf.load(CONF_DIR / "aug" / f"{aug}.yaml")
    aug_cfg = OmegaConf.to_container(
        OmegaConf.merge({"data": {"image_size": [8, 8]}}, {"aug": aug_cfg}), resolve=True
    )["aug"]
    args = dict(
        dataset="cifar10",
        root="unused",
        cache_dir="unused",
        batch_size=50,
        eval_batch_size=64,
        channels=3,
        image_size=(8, 8),
        aug_family="natural",
        aug=aug_cfg,
        seed=0,
    )
    dm = ImageDataModule(**{**args, **kw})
    dm.setup("fit")
    return dm


def _first_batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(loader))


def test_stratified_pick_keeps_class_proportions_and_size():
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    picked = stratified_pick(y, 30, np.random.default_rng(0))
    assert len(picked) == 30 and len(set(picked)) == 30
    assert np.bincount(y[picked]).tolist() == [21, 6, 3]


def test_split_is_seeded_disjoint_and_stratified(fake_data):
    a, b, c = _dm(seed=0), _dm(seed=0), _dm(seed=1)
    assert a.split_sizes() == {"train": 900, "val": 100, "test": 200}
    assert np.array_equal(a._splits["val"][0], b._splits["val"][0])
    assert not np.array_equal(a._splits["val"][0], c._splits["val"][0])
    assert np.bincount(a._splits["val"][1]).tolist() == [10] * 10
    train_rows = {img.tobytes() for img in a._splits["train"][0]}
    assert not any(img.tobytes() in train_rows for img in a._splits["val"][0])


def test_train_subset_is_stratified_and_leaves_val_alone(fake_data):
    full, small = _dm(), _dm(train_subset=50)
    assert small.split_sizes()["train"] == 50
    assert np.bincount(small._splits["train"][1]).tolist() == [5] * 10
    assert np.array_equal(full._splits["val"][0], small._splits["val"][0])
    with pytest.raises(ValueError, match="train_subset"):
        _dm(train_subset=5000)


def test_standardization_uses_training_split_statistics(fake_data):
    dm = _dm(standardize=True)
    pixels = dm._splits["train"][0].reshape(-1, 3) / 255.0
    assert torch.allclose(dm.mean, torch.tensor(pixels.mean(0), dtype=torch.float32))
    x, _ = dm.on_after_batch_transfer(_first_batch(dm.train_dataloader()), 0)
    assert x.dtype == torch.float32 and x.shape == (50, 3, 8, 8)
    all_train, _ = dm.on_after_batch_transfer(
        (torch.from_numpy(dm._splits["train"][0]).permute(0, 3, 1, 2), None), 0
    )
    assert torch.allclose(all_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(all_train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


@pytest.mark.parametrize("standardize", [False, True])
def test_binarize_feeds_0_1_pixels_and_standardizes_their_statistics(fake_data, standardize):
    # Ioffe & Szegedy 2015 Sec. 4.1: "a 28x28 binary image" (pixel > 127 -> 1)
    dm = _dm(binarize=True, standardize=standardize)
    raw = dm._splits["train"][0]
    x, _ = dm.on_after_batch_transfer((torch.from_numpy(raw).permute(0, 3, 1, 2), None), 0)
    binary = torch.from_numpy((raw > 127).astype(np.float32)).permute(0, 3, 1, 2)
    if standardize:
        mean = binary.mean(dim=(0, 2, 3))
        assert torch.allclose(dm.mean, mean) and torch.allclose(
            dm.std, binary.std(dim=(0, 2, 3), unbiased=False)
        )
        binary = (binary - mean.view(1, -1, 1, 1)) / dm.std.view(1, -1, 1, 1)
    assert torch.allclose(x, binary, atol=1e-6)
    assert len(torch.unique(x)) <= 2 * 3  # two values per channel


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.sampled_from([1, 3]),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["uniform", "dark", "constant"]),
)
def test_channel_stats_equal_the_float_pixel_statistics(n, channels, seed, kind):
    """Histogram mean/std match float64 pixel mean/std to float32, the precision a run uses."""
    rng = np.random.default_rng(seed)
    high = {"uniform": 256, "dark": 8, "constant": 1}[kind]
    x = rng.integers(0, high, size=(n, 5, 4, channels), dtype=np.uint8) + (kind == "constant") * 77
    x = x.astype(np.uint8)
    mean, std = channel_stats(x, channels)
    pixels = x.reshape(-1, channels).astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9, atol=1e-12)
    assert np.array_equal(mean.astype(np.float32), pixels.mean(0).astype(np.float32))


def test_augmentation_changes_train_batches_only(fake_data):
    plain, aug = _dm("none"), _dm("strong")
    x_plain, y_plain = _first_batch(plain.train_dataloader())
    x_aug, y_aug = _first_batch(aug.train_dataloader())
    assert torch.equal(y_plain, y_aug)  # same seed, same shuffle
    assert x_aug.dtype == torch.uint8 and x_aug.shape == x_plain.shape
    assert not torch.equal(x_plain, x_aug)
    for loader_plain, loader_aug in [
        (plain.val_dataloader(), aug.val_dataloader()),
        *zip(plain.test_dataloader(), aug.test_dataloader(), strict=True),
    ]:
        for (xp, _), (xa, _) in zip(loader_plain, loader_aug, strict=True):
            assert torch.equal(xp, xa)
    test_x, _ = _first_batch(aug.test_dataloader()[0])
    assert torch.equal(test_x, torch.from_numpy(fake_data.test.x[:64]).permute(0, 3, 1, 2))


def test_same_seed_same_augmented_batches(fake_data):
    batches = [[x for x, _ in _dm("light").train_dataloader()] for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))


def test_preview_shows_raw_and_augmented_without_touching_the_training_stream(fake_data):
    dm = _dm("light")
    before = _first_batch(dm.train_dataloader())[0]
    raw, augmented = dm.preview(8)
    assert raw.shape == augmented.shape == (8, 8, 8, 3)
    train_x = dm._splits["train"][0]
    assert all(any(np.array_equal(img, t) for t in train_x) for img in raw)  # as stored
    assert not np.array_equal(raw, augmented)
    assert torch.equal(_first_batch(dm.train_dataloader())[0], before)


def test_preview_samples_across_classes_even_when_the_split_is_sorted_by_class(fake_data):
    dm = _dm("none")
    x, y = dm._splits["train"]
    order = np.argsort(y, kind="stable")  # as an image folder stores it: class by class
    dm._splits["train"] = (x[order], y[order])
    raw, _ = dm.preview(20)
    shown = [int(y[order][np.flatnonzero((x[order] == img).all(axis=(1, 2, 3)))[0]]) for img in raw]
    assert len(raw) == 20 and sorted(set(shown)) == sorted(set(y.tolist()))  # every class, 2 each
    again, _ = dm.preview(20)
    assert np.array_equal(raw, again)  # seeded

"""The device data path against the albumentations (CPU) reference, and the trainer speed switches."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import functools
import logging
import time
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from conftest import fast_overrides, patch_dataset_load, run_cli, summaries
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.data.augment import BatchAugment
from ablate.data.datamodule import ImageDataModule
from ablate.data.device_aug import (
    DeviceAugment,
    Erase,
    NoDeviceEquivalent,
    build_device_augment,
    device_ops,
    generator,
)
from ablate.data.loaders import DeviceBatches
from ablate.validate import value_problems

SIZE = {"digits": (28, 28, 1), "fashion": (28, 28, 1), "natural": (32, 32, 3)}
# Where each preset runs (the table in src/ablate/device_aug.py).
PLACEMENT = {
    ("none", "digits"): "device",
    ("none", "fashion"): "device",
    ("none", "natural"): "device",
    ("light", "digits"): "cpu",
    ("light", "fashion"): "device",
    ("light", "natural"): "device",
    ("strong", "digits"): "cpu",
    ("strong", "fashion"): "cpu",
    ("strong", "natural"): "cpu",
}


@functools.lru_cache
def aug_cfg(preset: str, h: int, w: int) -> dict:
    """The `aug` node resolved against data.image_size, as train.py hands it to the datamodule."""
    node = OmegaConf.merge(
        {"data": {"image_size": [h, w]}},
        {"aug": OmegaConf.load(CONF_DIR / "aug" / f"{preset}.yaml")},
    )
    return OmegaConf.to_container(node, resolve=True)["aug"]


def both_paths(preset: str, family: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """The same uint8 (N, H, W, C) images through the albumentations pipeline and the device ops."""
    from ablate.data.augment import build_augment

    h, w = images.shape[1:3]
    cpu = build_augment(aug_cfg(preset, h, w), family, seed=0)(images)
    dev = build_device_augment(aug_cfg(preset, h, w), family, (h, w))
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    out = dev(x, generator("cpu", 0)).permute(0, 2, 3, 1).numpy()
    return {"cpu": cpu, "device": out}


def compose_both(transforms: list, images: np.ndarray) -> dict[str, np.ndarray]:
    """A hand-built Compose through albumentations and through its device equivalent."""
    compose = A.Compose(transforms)
    cpu = BatchAugment(compose, seed=0)(images)
    dev = DeviceAugment(device_ops(compose, images.shape[1:3]))
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    return {"cpu": cpu, "device": dev(x, generator("cpu", 0)).permute(0, 2, 3, 1).numpy()}


# --- which presets run where ---------------------------------------------------------------


@pytest.mark.parametrize(("preset", "family"), sorted(PLACEMENT))
def test_placement_table_matches_the_presets(preset, family):
    h, w, _ = SIZE[family]
    if PLACEMENT[preset, family] == "device":
        build_device_augment(aug_cfg(preset, h, w), family, (h, w))
    else:
        with pytest.raises(NoDeviceEquivalent, match="Affine|GaussianBlur"):
            build_device_augment(aug_cfg(preset, h, w), family, (h, w))


# --- same distributions on both paths -----------------------------------------------------


def bright_pixel_offsets(out: np.ndarray, r0: int, c0: int) -> tuple[np.ndarray, ...]:
    """(flipped, dy, dx) per image of a single bright pixel that started at (r0, c0)."""
    w = out.shape[2]
    flips, dys, dxs = [], [], []
    for o in out[..., 0]:
        (r,), (c,) = np.nonzero(o == 255)  # exactly one bright pixel survives
        flipped = abs(c - c0) > abs(c - (w - 1 - c0))
        flips.append(flipped)
        dys.append(r - r0)
        dxs.append(c - ((w - 1 - c0) if flipped else c0))
    return np.array(flips), np.array(dys), np.array(dxs)


@pytest.mark.parametrize(("family", "p"), [("fashion", 2), ("natural", 4)])
def test_light_flip_and_shift_have_the_same_distribution_on_both_paths(family, p):
    h, w, c = SIZE[family]
    n, r0, c0 = 1800, h // 2, p + 2  # c0 and its mirror are far apart: a flip is unambiguous
    images = np.zeros((n, h, w, c), np.uint8)
    images[:, r0, c0] = 255
    means = {}
    for path, out in both_paths("light", family, images).items():
        flips, dys, dxs = bright_pixel_offsets(out, r0, c0)
        assert 0.45 < flips.mean() < 0.55, path
        for d in (dys, dxs):
            values, counts = np.unique(d, return_counts=True)
            assert values.tolist() == list(range(-p, p + 1)), (
                path
            )  # the whole range, nothing beyond
            expected = n / (2 * p + 1)
            assert (np.abs(counts - expected) < 0.3 * expected).all(), (path, counts)  # ~uniform
        means[path] = (dys.mean(), dxs.mean())
    assert np.allclose(means["cpu"], means["device"], atol=0.25)


def test_light_natural_outputs_are_exactly_flips_and_zero_padded_crops():
    image = np.random.default_rng(7).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    candidates = {}
    for flip in (False, True):
        padded = np.pad(image[:, ::-1] if flip else image, ((4, 4), (4, 4), (0, 0)))
        for oy in range(9):
            for ox in range(9):
                candidates[padded[oy : oy + 32, ox : ox + 32].tobytes()] = (flip, oy, ox)
    for path, out in both_paths("light", "natural", np.repeat(image[None], 200, 0)).items():
        assert all(o.tobytes() in candidates for o in out), path


def test_reflect_padded_crop_matches_albumentations_exactly():
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 1), dtype=np.uint8)
    # cv2.BORDER_REFLECT_101 is numpy's "reflect" (the edge pixel is not repeated).
    padded = np.pad(image, ((3, 3), (3, 3), (0, 0)), mode="reflect")
    allowed = {padded[oy : oy + 16, ox : ox + 16].tobytes() for oy in range(7) for ox in range(7)}
    transforms = [A.Pad(padding=3, border_mode=4), A.RandomCrop(height=16, width=16)]
    for path, out in compose_both(transforms, np.repeat(image[None], 300, 0)).items():
        seen = {o.tobytes() for o in out}
        assert seen <= allowed, path
        assert len(seen) > 40, path  # most of the 49 shifts occur


@pytest.mark.parametrize(
    ("holes", "size", "fill"),
    [((1, 2), (0.1, 0.25), 0), ((1, 1), (0.25, 0.5), 0), ((1, 3), (3, 6), 9)],
)
def test_erasing_probability_and_area_match(holes, size, fill):
    n, h = 1500, 28
    images = np.full((n, h, h, 1), 200, np.uint8)
    transforms = [
        A.CoarseDropout(
            num_holes_range=holes, hole_height_range=size, hole_width_range=size, fill=fill, p=0.5
        )
    ]
    side = (int(h * size[0]), int(h * size[1])) if size[1] < 1 else size
    lo, hi = side[0] ** 2 / h**2, holes[1] * side[1] ** 2 / h**2
    stats = {}
    for path, out in compose_both(transforms, images).items():
        assert set(np.unique(out)) <= {200, fill}
        area = (out == fill).mean(axis=(1, 2, 3))
        erased = area > 0
        assert 0.45 < erased.mean() < 0.55, path
        assert lo <= area[erased].min() and area[erased].max() <= hi, path
        stats[path] = area[erased].mean()
    assert stats["device"] == pytest.approx(stats["cpu"], rel=0.1)


def test_unsupported_ops_and_settings_are_named():
    with pytest.raises(NoDeviceEquivalent, match="GaussianBlur"):
        device_ops(A.Compose([A.GaussianBlur(p=1)]), (8, 8))
    with pytest.raises(NoDeviceEquivalent, match="border_mode"):
        device_ops(A.Compose([A.Pad(padding=2, border_mode=1), A.RandomCrop(8, 8)]), (8, 8))
    with pytest.raises(NoDeviceEquivalent, match="RandomCrop back to the input size"):
        device_ops(A.Compose([A.Pad(padding=2)]), (8, 8))
    with pytest.raises(NoDeviceEquivalent, match="fill"):
        device_ops(A.Compose([A.CoarseDropout(fill="random")]), (8, 8))
    assert isinstance(device_ops(A.Compose([A.CoarseDropout(fill=3)]), (8, 8))[0], Erase)


# --- the datamodule's two paths -----------------------------------------------------------


@pytest.fixture
def fake_data(monkeypatch):
    """Patch datasets.load: 600 train / 130 test generated 12x12 RGB images."""
    return patch_dataset_load(monkeypatch, 600, 130, 12)


def make_dm(aug: str = "light", **kw) -> ImageDataModule:
    args = dict(
        dataset="cifar10",
        root="unused",
        cache_dir="unused",
        batch_size=32,
        eval_batch_size=48,
        channels=3,
        image_size=(12, 12),
        aug_family="natural",
        aug=aug_cfg(aug, 12, 12),
        seed=0,
        eval_train_max=100,
    )
    dm = ImageDataModule(**{**args, **kw})
    dm.setup("fit")
    return dm


def batches(loader, dm: ImageDataModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [dm.on_after_batch_transfer(b, 0) for b in loader]


def test_eval_batches_are_identical_on_both_paths(fake_data):
    cpu, dev = make_dm(on_device=False), make_dm(on_device=True)
    assert cpu.data_path == "cpu" and dev.data_path == "device"
    pairs = [(cpu.val_dataloader(), dev.val_dataloader())]
    pairs += zip(cpu.test_dataloader(), dev.test_dataloader(), strict=True)
    for loader_cpu, loader_dev in pairs:
        assert isinstance(loader_dev, DeviceBatches) and len(loader_cpu) == len(loader_dev)
        for (xc, yc), (xd, yd) in zip(
            batches(loader_cpu, cpu), batches(loader_dev, dev), strict=True
        ):
            assert torch.equal(xc, xd) and torch.equal(yc, yd)
            assert xc.dtype == torch.float32


def test_device_train_epoch_is_a_permutation_with_the_cpu_batch_sizes(fake_data):
    cpu, dev = make_dm("none", on_device=False), make_dm("none", on_device=True)
    sizes = [len(y) for _, y in cpu.train_dataloader()]
    epoch = list(dev.train_dataloader())
    assert [len(y) for _, y in epoch] == sizes
    x = torch.cat([b[0] for b in epoch]).permute(0, 2, 3, 1).numpy()
    stored = {img.tobytes() for img in dev._splits["train"][0]}
    assert len({img.tobytes() for img in x}) == len(x) == len(stored)
    assert {img.tobytes() for img in x} == stored


def test_device_path_is_seeded_per_epoch(fake_data):
    def two_epochs(seed: int) -> list[torch.Tensor]:
        loader = make_dm(on_device=True, seed=seed).train_dataloader()
        return [torch.cat([x.flatten() for x, _ in loader]) for _ in range(2)]

    a, b, c = two_epochs(0), two_epochs(0), two_epochs(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # same seed: identical batches
    assert not torch.equal(a[0], a[1])  # a new shuffle and new augmentation each epoch
    assert not torch.equal(a[0], c[0])


def test_device_augmentation_changes_train_batches_only(fake_data):
    plain, aug = make_dm("none", on_device=True), make_dm("light", on_device=True)
    (xp, yp), (xa, ya) = next(iter(plain.train_dataloader())), next(iter(aug.train_dataloader()))
    assert torch.equal(yp, ya) and not torch.equal(xp, xa) and xa.dtype == torch.uint8
    for (x1, _), (x2, _) in zip(plain.val_dataloader(), aug.val_dataloader(), strict=True):
        assert torch.equal(x1, x2)
    raw, shown = aug.preview(8)
    assert shown.shape == raw.shape and not np.array_equal(raw, shown)


def test_path_choice_auto_forced_and_bad_values(fake_data, caplog):
    assert make_dm("light").data_path == "cpu"  # auto on CPU
    auto = make_dm("strong")
    assert auto._choose_path(torch.device("cuda")) is False  # auto on a GPU, CPU-only preset
    assert "GaussianBlur" in caplog.text or "Affine" in caplog.text
    assert make_dm("light")._choose_path(torch.device("cuda")) is True
    with pytest.raises(ValueError, match="data.on_device=true.*data.on_device=null"):
        make_dm("strong", on_device=True)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["data.on_device=yes"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    # its range is its annotation, checked where every value is: by the config check
    assert any("data.on_device='yes' is not allowed" in p for p in value_problems(cfg))


def rows(loader) -> list[set[bytes]]:
    """Each batch's images as a set of byte strings."""
    return [{img.numpy().tobytes() for img in x} for x, _ in loader]


def rank_loader(dm: ImageDataModule, split: str, rank: int, monkeypatch):
    """The loader rank `rank` of 2 gets (no trainer needed)."""
    monkeypatch.setattr(dm, "_rank_world", lambda: (rank, 2))
    return dm._loader(split, shuffle=split == "train")


@pytest.mark.parametrize("on_device", [False, True])
def test_two_ranks_together_see_the_batches_of_one_process(fake_data, on_device, monkeypatch):
    single = rows(make_dm("none", on_device=on_device, batch_size=64).train_dataloader())
    two = make_dm("none", on_device=on_device, batch_size=32)
    ranks = [rows(rank_loader(two, "train", r, monkeypatch)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(single)  # DDP needs equal step counts
    for step, batch in enumerate(single[:-1]):  # the last one is padded to split evenly
        assert ranks[0][step] | ranks[1][step] == batch
    val = set().union(*rows(make_dm("none", on_device=on_device).val_dataloader()))
    shards = [rows(rank_loader(two, "val", r, monkeypatch)) for r in (0, 1)]
    counts = sum(len(b) for s in shards for b in s)
    assert counts == len(val) and set().union(*shards[0], *shards[1]) == val  # each once


# --- the real CLI ---------------------------------------------------------------------------


def cli_run(tmp_path: Path, data_root: Path, *extra: str) -> tuple[dict, str]:
    """A tiny CLI run that must complete: its summary and stderr."""
    result = run_cli(*fast_overrides(data_root, tmp_path), "threads=1", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    (summary,) = summaries(tmp_path / "logs").values()
    assert summary["status"] == "completed"
    return summary, result.stderr


def cli_ok(tmp_path: Path, data_root: Path, *extra: str) -> dict:
    """A tiny CLI run that must complete: its summary."""
    return cli_run(tmp_path, data_root, *extra)[0]


def test_cli_trains_on_the_device_path(tmp_path, data_root):
    cli_ok(tmp_path, data_root, "data=fashion_mnist", "aug=light", "data.on_device=true")
    (log,) = (tmp_path / "logs").rglob("train.log")
    assert "data path: device (cpu)" in log.read_text()


def test_cli_forced_device_path_with_a_cpu_only_preset_fails_before_training(tmp_path, data_root):
    result = run_cli(*fast_overrides(data_root, tmp_path), "aug=strong", "data.on_device=true")
    assert result.returncode != 0
    assert "data.on_device=true" in result.stderr and "data.on_device=null" in result.stderr


def test_cli_bf16_mixed_and_channels_last_train(tmp_path, data_root):
    summary = cli_ok(
        tmp_path,
        data_root,
        "trainer.precision=bf16-mixed",
        "model.channels_last=true",
        "trainer.max_steps=3",
    )
    assert summary["steps"] == 3
    assert summary["config"]["trainer"]["precision"] == "bf16-mixed"


def test_channels_last_keeps_the_outputs(data_root):

    from ablate.models import build_model

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        plain_cfg = compose(config_name="train")
        cl_cfg = compose(config_name="train", overrides=["model.channels_last=true"])
    torch.manual_seed(0)
    plain = build_model(
        plain_cfg.model,
        plain_cfg.norm,
        plain_cfg.reg,
        plain_cfg.init,
        in_channels=1,
        num_classes=10,
        image_size=(28, 28),
    ).eval()
    cl = build_model(
        cl_cfg.model,
        cl_cfg.norm,
        cl_cfg.reg,
        cl_cfg.init,
        in_channels=1,
        num_classes=10,
        image_size=(28, 28),
    ).eval()
    cl.load_state_dict(plain.state_dict())
    conv = cl.features[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(plain(x), cl(x), atol=1e-5)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["model.compile=yes"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert any("model.compile='yes'" in p for p in value_problems(cfg))


@pytest.mark.slow
def test_cli_compile_trains(tmp_path, data_root):
    t = time.perf_counter()
    summary = cli_ok(tmp_path, data_root, "model.compile=true", "trainer.max_steps=2")
    assert summary["steps"] == 2
    logging.getLogger(__name__).info("compile run: %.1f s", time.perf_counter() - t)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path, data_root):
    # No BatchNorm and no augmentation: a DDP step (2 x 32 images, gradients averaged) then sees
    # the same images and the same mean gradient as one process with 64, so the runs agree up to
    # float summation order. A few small steps keep the toy task away from 100% accuracy's plateau.
    common = ["norm=none", "data=fashion_mnist", "trainer.max_steps=4", "data.eval_train_max=0"]
    common += ["optim.lr=0.01", "scheduler=none"]
    single = cli_ok(tmp_path / "one", data_root, *common, "data.batch_size=64")
    ddp, stderr = cli_run(
        tmp_path / "ddp",
        data_root,
        *common,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "data.batch_size=32",
    )
    assert ddp["steps"] == single["steps"] == 4
    for key in ("val/acc_best", "test/acc"):
        assert ddp["metrics"][key] == pytest.approx(single["metrics"][key], abs=0.02), key
    # Losses are synced means over both ranks (torchmetrics), so they match closely too.
    assert ddp["metrics"]["val/loss"] == pytest.approx(single["metrics"]["val/loss"], rel=1e-3)
    train_losses = [[h["train/loss"] for h in run["history"]] for run in (single, ddp)]
    assert train_losses[1] == pytest.approx(train_losses[0], rel=1e-4)
    assert "distributed_backend=gloo" in stderr and "Starting with 2 processes" in stderr
    assert "data path: CPU" in next((tmp_path / "ddp" / "logs").rglob("train.log")).read_text()


@pytest.mark.parametrize(
    ("accelerator", "cuda", "bf16", "precision", "channels_last"),
    [
        ("cpu", True, True, "32-true", False),  # CPU by choice, even on a GPU machine
        ("auto", False, False, "32-true", False),  # no GPU: nothing changes on CPU
        ("auto", True, True, "bf16-mixed", True),
        ("gpu", True, False, "32-true", True),  # a GPU without bfloat16 (pre-Ampere)
    ],
)
def test_speed_switches_default_on_where_they_help(
    monkeypatch, accelerator, cuda, bf16, precision, channels_last
):
    """precision and channels_last resolve per machine: on a (bf16) GPU, off on CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"trainer.accelerator={accelerator}"])
    assert cfg.trainer.precision == precision
    assert cfg.model.channels_last is channels_last
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        chosen = compose(
            config_name="train",
            overrides=[f"trainer.accelerator={accelerator}", "trainer.precision=32-true",
                       "model.channels_last=false"],
        )  # fmt: skip
    assert (chosen.trainer.precision, chosen.model.channels_last) == ("32-true", False)

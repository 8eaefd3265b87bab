"""What every run watches besides its steps (ablate.training): divergence, the learning curve, the step
limit; and that they stay when conf/callbacks is switched off."""

from __future__ import annotations

import io
import math
import re
from functools import partial
from pathlib import Path

import pytest
import torch
from conftest import REPO, assert_ok, fast_overrides, run_cli, summaries
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from ablate.module import Classifier
from ablate.training.curve import LearningCurve, upgrade_checkpoint
from ablate.training.divergence import DivergenceStop, read_interval

LOSS = st.one_of(
    st.floats(0, 20, allow_nan=False), st.just(math.nan), st.just(math.inf), st.just(-math.inf)
)


@settings(max_examples=200, deadline=None)
@given(
    losses=st.lists(LOSS, min_size=1, max_size=40),
    every=st.integers(1, 8),
    max_loss=st.floats(0.5, 15),
)
def test_divergence_keeps_the_first_bad_step_and_stops_at_the_next_read(losses, every, max_loss):
    """Bad = not finite or above max_loss. The flag is read every `every` steps and at the last step;
    the recorded step is the first bad one whenever it is read."""
    stop = DivergenceStop(max_loss, read_every=every)
    steps = range(1, len(losses) + 1)
    stopped_at = next(
        (
            s
            for s in steps
            if stop.check(
                torch.tensor(losses[s - 1], dtype=torch.float64), s, last=s == len(losses)
            )
        ),
        None,
    )
    bad = [s for s in steps if not math.isfinite(losses[s - 1]) or losses[s - 1] > max_loss]
    if not bad:
        assert (stopped_at, stop.diverged_at_step) == (None, None)
        return
    reads = [s for s in steps if s % every == 0 or s == len(losses)]
    assert stop.diverged_at_step == bad[0]
    assert stopped_at == next(s for s in reads if s >= bad[0])


@settings(max_examples=200, deadline=None)
@given(
    losses=st.lists(LOSS, min_size=1, max_size=40),
    chunk=st.integers(2, 8),
    every=st.integers(1, 8),
    max_loss=st.floats(0.5, 15),
)
@example(losses=[0.0, 0.0, math.nan, math.nan], chunk=3, every=2, max_loss=1.0)  # bad after a read
def test_divergence_in_chunks_records_the_first_bad_step_of_a_chunk(losses, chunk, every, max_loss):
    """With steps_per_call > 1 the test sees a chunk's losses at once: the recorded step is still
    the first bad one, and the stop comes at the end of the first chunk holding or following the
    bad step that crosses a read point (or is the last): the flag is read there, the whole chunk's
    losses already in it."""
    stop = DivergenceStop(max_loss, read_every=every)
    ends = [min(e, len(losses)) for e in range(chunk, len(losses) + chunk, chunk)]
    stopped_at, start = None, 0
    for end in ends:
        values = torch.tensor(losses[start:end], dtype=torch.float64)
        if stop.check(values, end, last=end == len(losses)):
            stopped_at = end
            break
        start = end
    bad = [s for s in range(1, len(losses) + 1)
           if not math.isfinite(losses[s - 1]) or losses[s - 1] > max_loss]  # fmt: skip
    if not bad:
        assert (stopped_at, stop.diverged_at_step) == (None, None)
        return
    assert stop.diverged_at_step == bad[0]
    starts = [0, *ends[:-1]]
    read_at = [e for s, e in zip(starts, ends, strict=True)
               if any(t % every == 0 for t in range(s + 1, e + 1)) or e == len(losses)]  # fmt: skip
    assert stopped_at == next(e for e in read_at if e >= bad[0])


def test_divergence_is_read_every_step_on_cpu_and_every_n_on_an_accelerator():
    assert read_interval(torch.device("cpu")) == 1
    assert read_interval(torch.device("cuda", 0)) == read_interval(torch.device("mps")) > 1
    stop = DivergenceStop(10.0)  # read_every unset: by the loss's device, here every step
    assert [stop.check(torch.tensor(v), s) for s, v in ((1, 1.0), (2, 20.0))] == [False, True]
    assert stop.diverged_at_step == 2


def _curve(stage: str = "fit") -> LearningCurve:
    curve = LearningCurve()
    curve.setup(None, None, stage)
    return curve


def _round_trip(state: dict) -> dict:
    """Through torch.save and a weights-only load, as a checkpoint file goes."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


FLOATS = st.floats(0, 10, width=32, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    before=st.lists(FLOATS, max_size=6),
    pending=st.lists(FLOATS, max_size=6),
    after=st.lists(FLOATS, max_size=6),
)
def test_learning_curve_survives_a_checkpoint_bit_for_bit(before, pending, after):
    """Saved between validations (`pending` losses counted, no entry yet) and restored into a new
    curve, the curve goes on exactly as the one never saved; train/loss is the mean since the last
    entry, nan when no step came between."""
    curve = _curve()
    for v in before:
        curve.add_train_loss(torch.tensor(v))
    curve.add_entry(3, 0, torch.tensor(0.5), torch.tensor(1.25))
    for v in pending:
        curve.add_train_loss(torch.tensor(v))
    resumed = _curve()
    resumed.load_state_dict(_round_trip(curve.state_dict()))
    assert _same(resumed.history, curve.history)
    for c in (curve, resumed):
        for v in after:
            c.add_train_loss(torch.tensor(v))
        c.add_entry(9, 1, torch.tensor(0.75), None)
    assert len(curve.history) == 2
    assert _same(resumed.history, curve.history)
    first, second = curve.history
    assert first["step"] == 3 and first["val/acc"] == 0.5 and math.isnan(second["val/loss"])
    for entry, losses in ((first, before), (second, pending + after)):
        expected = sum(losses) / len(losses) if losses else math.nan
        assert _close(entry["train/loss"], expected)


def _same(a: list[dict], b: list[dict]) -> bool:
    return [{k: repr(v) for k, v in e.items()} for e in a] == [
        {k: repr(v) for k, v in e.items()} for e in b
    ]


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6)


def test_testing_a_checkpoint_leaves_the_curve_alone():
    """trainer.test(ckpt_path=best) restores callbacks too: the finished curve must stay."""
    saved = _curve()
    saved.add_entry(2, 0, 0.1, 2.0)
    state = saved.state_dict()
    curve = _curve()
    for step in (2, 4, 6):
        curve.add_entry(step, step // 2, 0.5, 1.0)
    curve.setup(None, None, "test")
    curve.load_state_dict(state)
    assert [e["step"] for e in curve.history] == [2, 4, 6]


def _module() -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    return Classifier(net, optimizer=partial(torch.optim.SGD, lr=0.1), num_classes=3)


def test_a_checkpoint_from_before_the_curve_callback_loads_and_goes_on():
    """Before, the module kept the curve: "history" at the top level and the running train loss in
    its state_dict. Such a checkpoint still loads strictly, and the curve continues from it."""
    module = _module()
    old_curve = _curve()
    for v in (2.0, 3.0):
        old_curve.add_train_loss(torch.tensor(v))
    since_val = old_curve.state_dict()["train_loss_since_val"]
    history = [{"step": 4, "epoch": 0, "val/acc": 0.25, "val/loss": 2.5, "train/loss": 2.25}]
    old = {
        "state_dict": {
            **module.state_dict(),
            **{f"_train_loss_since_val.{k}": v for k, v in since_val.items()},
        },
        "history": history,
        "callbacks": {"ResumeState": {"rng": {}}},
    }
    fresh = _module()
    fresh.on_load_checkpoint(old)
    fresh.load_state_dict(old["state_dict"])  # strict: no leftover keys
    assert "history" not in old and old["callbacks"]["ResumeState"] == {"rng": {}}
    curve = _curve()
    curve.load_state_dict(old["callbacks"][LearningCurve.__qualname__])
    curve.add_train_loss(torch.tensor(4.0))
    curve.add_entry(8, 1, 0.5, 1.5)
    assert curve.history[0] == history[0]
    assert curve.history[1]["train/loss"] == 3.0  # (2 + 3 + 4) / 3: the old running sum went on


def test_a_new_checkpoint_is_not_changed_by_the_upgrade():
    module, curve = _module(), _curve()
    curve.add_entry(4, 0, 0.5, 1.0)
    checkpoint = {
        "state_dict": module.state_dict(),
        "callbacks": {"LearningCurve": curve.state_dict()},
    }
    before = {"keys": set(checkpoint["state_dict"]), "cb": repr(checkpoint["callbacks"])}
    upgrade_checkpoint(checkpoint)
    assert {"keys": set(checkpoint["state_dict"]), "cb": repr(checkpoint["callbacks"])} == before


def test_callbacks_none_still_stops_diverged_runs_and_validates_at_max_steps(data_root, tmp_path):
    """The curve, the divergence test and the step limit come with every run, not from
    conf/callbacks: with callbacks=none a run still diverges as a result, and a run stopped by
    max_steps mid-epoch is validated at its last step."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "max_loss=1000,0.5",
        *[a for a in fast_overrides(data_root, tmp_path) if not a.startswith("callbacks.")],
        "callbacks=none",
        "+trainer.enable_progress_bar=false",
        "trainer.max_steps=5",  # an epoch is 600 * 0.9 / 32 = 17 steps
        f"hydra.sweep.dir={sweep}",
    )
    assert_ok(proc)
    found = summaries(sweep)
    completed, diverged = found["max_loss=1000"], found["max_loss=0.5"]
    assert completed["status"] == "completed" and completed["steps"] == 5
    assert [h["step"] for h in completed["history"]] == [5]
    assert math.isfinite(completed["history"][0]["train/loss"])
    assert 0 <= completed["metrics"]["test/acc"] <= 1
    assert diverged["status"] == "diverged" and diverged["diverged_at_step"] == 1
    assert [h["step"] for h in diverged["history"]] == [1]


# Lightning's private state (leading underscore) on a Trainer, its connectors and loops.
PRIVATE_LIGHTNING = re.compile(
    r"trainer\._\w|_(logger|accelerator|signal|checkpoint|data|callback)_connector|"
    r"_active_loop|_batches_that_stepped|\._results\b"
)
# Left for want of a public equivalent in Lightning 2.6: submitit preemption and Ctrl-C raise the
# received-SIGTERM flag that makes the loop stop at its next safe point. With steps_per_call > 1,
# the loggers' step counter advances by a chunk's steps (Lightning counts one per batch).
KNOWN = {"preemption.py": 2, "ctrl_c.py": 1, "chunks.py": 1}


@pytest.mark.parametrize("path", sorted((REPO / "src").rglob("*.py")), ids=lambda p: p.name)
def test_no_private_lightning_attributes_in_src(path: Path):
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_LIGHTNING.search(line)
    ]
    assert len(hits) == KNOWN.get(path.name, 0), "\n".join(hits)

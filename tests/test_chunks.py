"""steps_per_call: several optimizer steps per Lightning batch give the weights of one step per batch."""

from __future__ import annotations

import math

import lightning as L
import torch
from conftest import REPO
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.module import Classifier
from ablate.run.resume import ResumableLoader
from ablate.testing.bench import build_net, compose_cfg
from ablate.training import chunks

OPTIONS = {
    g: sorted(p.stem for p in (REPO / "conf" / g).glob("*.yaml")) for g in ("norm", "reg", "init")
}
EVENTS = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 2000), min_size=1)


@given(events=EVENTS)
def test_auto_is_the_largest_chunk_that_every_event_falls_on(events: dict[str, int]) -> None:
    s, problem = chunks.resolve("auto", events, [])
    assert problem is None and 1 <= s <= chunks.AUTO_MAX
    assert all(every % s == 0 for every in events.values())
    assert not any(
        all(e % t == 0 for e in events.values()) for t in range(s + 1, chunks.AUTO_MAX + 1)
    )


@given(events=EVENTS, s=st.integers(2, 64))
def test_an_explicit_chunk_is_kept_or_refused_naming_the_event(
    events: dict[str, int], s: int
) -> None:
    got, problem = chunks.resolve(s, events, [])
    if all(every % s == 0 for every in events.values()):
        assert (got, problem) == (s, None)
    else:
        key = next(k for k, every in events.items() if every % s)
        assert got == 1 and f"steps_per_call={s}" in problem and key in problem
        assert "\n" not in problem


def test_settings_that_need_single_steps_make_auto_1_and_refuse_an_explicit_chunk() -> None:
    blocked = chunks.blockers({"gradient_clip_val": 1.0}, {})
    assert chunks.resolve("auto", {"x": 20}, blocked) == (1, None)
    s, problem = chunks.resolve(4, {"x": 20}, blocked)
    assert s == 1 and "trainer.gradient_clip_val=1.0" in problem
    diag = {"activations": {"_target_": "ablate.diagnostics.activations.ActivationStats"}}
    assert chunks.blockers({}, diag) and not chunks.blockers({}, {"x": None})


def test_step_events_read_the_trainer_and_the_step_checkpoints() -> None:
    trainer = {"val_check_interval": 100, "log_every_n_steps": 20, "max_steps": 2000}
    cbs = {"last_checkpoint": {"every_n_train_steps": 50}, "bar": None}
    events = chunks.step_events(trainer, cbs, 900)
    assert sorted(events.values()) == [20, 50, 100, 900, 2000]
    assert chunks.resolve("auto", events, []) == (10, None)
    assert "trainer.val_check_interval" not in chunks.step_events(
        {"val_check_interval": 1.0}, {}, 9
    )
    assert chunks.blockers({"val_check_interval": 0.5}, {}) == ["trainer.val_check_interval=0.5"]


@given(n=st.integers(1, 40), s=st.integers(1, 8), used_chunks=st.integers(1, 10))
def test_a_chunked_loader_yields_the_batches_in_order_and_resumes_at_a_chunk(
    n: int, s: int, used_chunks: int
) -> None:
    batches = [(torch.tensor([i]), torch.tensor([i])) for i in range(n)]
    loader = ResumableLoader(batches, steps_per_call=s)
    got = list(loader)
    assert len(got) == len(loader) == math.ceil(n / s)
    assert all(isinstance(c, chunks.Chunk) for c in got) if s > 1 else True
    flat = [b for c in got for b in c] if s > 1 else got
    assert [int(b[0]) for b in flat] == list(range(n))
    loader = ResumableLoader(batches, steps_per_call=s)
    it = iter(loader)
    k = min(used_chunks, len(got))
    for _ in range(k):
        next(it)
    state = loader.state_dict()
    assert state["used"] == min(k * s, n)
    again = ResumableLoader(batches, steps_per_call=s)
    again.load_state_dict(state)
    rest = [b for c in again for b in (c if s > 1 else [c])]
    start = k * s if k * s < n else 0  # saved at the epoch's end: the next epoch, from its start
    assert [int(b[0]) for b in rest] == list(range(start, n))


def _fit(overrides: list[str], steps_per_call: int, steps: int = 6) -> dict[str, torch.Tensor]:
    """Weights after `steps` SGD steps on fixed random batches, `steps_per_call` steps a batch."""
    cfg = compose_cfg(["model.channels=[8,16]", "model.hidden=16", *overrides])
    net = build_net(cfg, (1, 28, 28), 10)
    model = Classifier(net, optimizer=instantiate(cfg.optim), scheduler=instantiate(cfg.scheduler),
                       reg=instantiate(cfg.reg), steps_per_call=steps_per_call)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))
               for _ in range(steps)]  # fmt: skip
    data = ResumableLoader(batches, steps_per_call)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        deterministic=True, callbacks=[chunks.ChunkSteps()],
    )  # fmt: skip
    torch.manual_seed(1)  # dropout and noisy BatchNorm draw from the global stream
    trainer.fit(model, train_dataloaders=data)
    assert trainer.global_step == steps
    return {k: v.clone() for k, v in model.state_dict().items()}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(norm=st.sampled_from(OPTIONS["norm"]), reg=st.sampled_from(OPTIONS["reg"]),
       init=st.sampled_from(OPTIONS["init"]), s=st.sampled_from([2, 3, 6]))  # fmt: skip
def test_chunked_steps_give_the_same_weights_bit_for_bit(
    norm: str, reg: str, init: str, s: int
) -> None:
    overrides = [f"norm={norm}", f"reg={reg}", f"init={init}"]
    one, chunked = _fit(overrides, 1), _fit(overrides, s)
    assert one.keys() == chunked.keys()
    assert all(torch.equal(one[k], chunked[k]) for k in one), [
        k for k in one if not torch.equal(one[k], chunked[k])
    ]


def test_every_option_is_covered_by_the_equivalence_test() -> None:
    """Each norm, reg and init option at least once, at a chunk of 2 (the drawn test above samples):
    the i-th config takes the i-th option of each group (cycling the shorter groups)."""
    n = max(len(options) for options in OPTIONS.values())
    for i in range(n):
        overrides = [f"{g}={options[i % len(options)]}" for g, options in OPTIONS.items()]
        one, chunked = _fit(overrides, 1, 4), _fit(overrides, 2, 4)
        assert all(torch.equal(one[k], chunked[k]) for k in one), overrides

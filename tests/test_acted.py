"""Whether each regularizer acted (summary.json's "techniques") and the hardware a run came from
(cpu_model, cpu_capability): real CLI runs, and the helpers that read them back."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import torch
from conftest import assert_ok, fast_overrides, run_cli
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from ablate.models.cnn import CNN
from ablate.models.mlp import MLP
from ablate.report.load import Run, acted
from ablate.run import summary
from ablate.techniques.reg import Reg
from ablate.training.acted import dropout_modules

SMALL = ["data.train_subset=320", "data.eval_train_max=64", "seed=0"]


def _train(data_root: Path, tmp: Path, name: str, *extra: str) -> dict:
    run = tmp / name
    assert_ok(run_cli(*fast_overrides(data_root, tmp), *SMALL, *extra, f"hydra.run.dir={run}"))
    return json.loads((run / "summary.json").read_text())


def test_a_binding_max_norm_counts_projections_and_dropout_its_dropped_fraction(
    data_root, tmp_path
):
    s = _train(data_root, tmp_path, "tight", "reg=dropout_maxnorm", "reg.max_norm=0.05")
    t = s["techniques"]
    assert set(t) == {"max_norm", "dropout", "dropout2d"}  # only the techniques that are on
    assert t["max_norm"]["steps"] == s["steps"] > 0  # one constraint call per optimizer step
    assert t["max_norm"]["projections"] > 0 and t["max_norm"]["acted"] is True
    for name, rate in (("dropout", 0.5), ("dropout2d", 0.1)):
        entry = t[name]
        assert entry["modules"] >= 1 and entry["measured"] is True and entry["acted"] is True
        assert abs(entry["dropped"] - rate) < 0.1, (name, entry)
    # where it trained, in typed fields and in the one-line summary
    assert s["cpu_model"] == summary.cpu_model() and s["cpu_model"] in s["machine"]
    assert s["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert "gpu_models" not in s  # trainer=cpu: no CUDA context, no GPU named


def test_a_limit_no_weight_reaches_never_acts_and_penalty_decay_smoothing_are_recorded(
    data_root, tmp_path
):
    s = _train(
        data_root, tmp_path, "loose", "model=mlp", "model.width=32", "reg=all",
        "reg.max_norm=1000000", "reg.weight_decay=0.01", "reg.label_smoothing=0.1",
    )  # fmt: skip
    t = s["techniques"]
    assert t["max_norm"] == {"limit": 1e6, "projections": 0, "steps": s["steps"], "acted": False}
    for k in ("l1", "l2"):  # both on: the penalty's share, split by the two terms' sizes
        assert 0 < t[k]["loss_share"] < 1 and t[k]["acted"] is True
    assert t["l2"]["loss_share"] + t["l1"]["loss_share"] < 1
    assert t["dropout"]["acted"] is True and abs(t["dropout"]["dropped"] - 0.5) < 0.1
    # reg=all sets dropout2d, but an MLP has no feature maps: on, yet it never acted
    assert t["dropout2d"] == {"rate": 0.1, "modules": 0, "dropped": 0.0, "acted": False}
    wd = t["weight_decay"]  # 1 - prod(1 - lr * wd) <= sum(lr * wd)
    assert wd["steps"] == s["steps"] and 0 < wd["shrink"] <= wd["lr_wd_sum"] < 1
    assert wd["acted"] is True
    assert t["label_smoothing"] == {"epsilon": 0.1, "acted": True}


def test_no_regularizer_records_no_techniques(data_root, tmp_path):
    s = _train(data_root, tmp_path, "none", "reg=none", "model=mlp", "model.width=16")
    assert s["techniques"] == {}


def test_constrain_returns_how_many_rows_it_rescaled():
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[3.0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0, 4.0, 0]]))
    assert int(Reg(max_norm=1.0).constrain_([linear.weight])) == 2
    assert int(Reg(max_norm=1.0).constrain_([linear.weight])) == 0  # now every row is at <= 1
    assert Reg().constrain_([linear.weight]) is None  # max-norm off


def test_dropout_modules_are_told_apart_by_the_rate_that_made_them():
    cnn = CNN(1, 10, (28, 28), channels=[4, 8], hidden=16, dropout=0.5, dropout2d=0.1,
              input_dropout=0.2)  # fmt: skip
    found = dropout_modules(cnn)
    assert [m.p for m in found["input_dropout"]] == [0.2]
    assert [m.p for m in found["dropout"]] == [0.5]
    assert {m.p for m in found["dropout2d"]} == {0.1} and len(found["dropout2d"]) == 2
    mlp = MLP(1, 10, (28, 28), depth=2, width=8, dropout=0.2, input_dropout=0.2)
    found = dropout_modules(mlp)
    assert len(found["input_dropout"]) == 1 and len(found["dropout"]) == 2
    assert found["dropout2d"] == []


def test_the_cpu_model_is_read_from_cpuinfo_else_the_platform(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R)  Xeon(R) "
                    "Platinum 8481C CPU @ 2.70GHz\nflags\t\t: fpu avx512f\n")  # fmt: skip
    assert summary.cpu_model(info) == "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"
    assert summary.cpu_model(tmp_path / "missing") == (platform.processor() or None)
    assert summary.cpu_capability() in {"DEFAULT", "NO AVX", "AVX2", "AVX512", "ZVECTOR", "SVE256"}


def _run(entry: dict | None) -> Run:
    return Run("r", "completed", techniques={} if entry is None else {"max_norm": entry})


@given(st.lists(st.sampled_from([None, True, False]), max_size=12))
def test_acted_counts_runs_where_it_acted_among_runs_that_recorded_it(flags):
    runs = [_run(None if f is None else {"projections": int(f), "acted": f}) for f in flags]
    assert acted(runs, "max_norm") == (flags.count(True), flags.count(True) + flags.count(False))
    assert acted(runs, "l2") == (0, 0)


@pytest.mark.parametrize("older", [{}, {"techniques": None}])
def test_an_older_summary_has_no_techniques_and_no_cpu_model(tmp_path, older):
    from ablate.report.load.runs import load_run

    path = tmp_path / "run" / "summary.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"status": "completed", "machine": "x86_64, 2 CPUs", **older}))
    run = load_run(path, tmp_path)
    assert run.techniques == {} and run.cpu_model is None and run.gpu_models == []
    assert acted([run], "max_norm") == (0, 0)


def test_counts_survive_a_checkpoint_but_testing_a_best_checkpoint_does_not_rewind_them():
    from ablate.training.acted import TechniqueUse

    use = TechniqueUse(Reg(max_norm=1.0, l2=0.1))
    use.setup(None, nn.Module(), "fit")
    use.on_train_batch_end(None, _Steps(5), None, None, 0)
    saved = use.state_dict()
    resumed = TechniqueUse(Reg(max_norm=1.0, l2=0.1))
    resumed.setup(None, nn.Module(), "fit")
    resumed.load_state_dict(saved)
    resumed.on_train_batch_end(None, _Steps(2), None, None, 1)
    record = resumed.record()
    assert record["max_norm"] == {"limit": 1.0, "projections": 7, "steps": 2, "acted": True}
    assert record["l2"]["loss_share"] == pytest.approx(0.5) and record["l2"]["acted"]
    resumed.setup(None, nn.Module(), "test")  # trainer.test(ckpt_path=best) restores callbacks
    resumed.load_state_dict(saved)
    assert resumed.record() == record


class _Steps(nn.Module):
    """A module whose last optimizer step rescaled `n` rows, with a penalty half of the loss."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.step_values = {"max_norm_projected": torch.tensor(n), "penalty": torch.tensor(1.0),
                            "loss": torch.tensor(2.0)}  # fmt: skip

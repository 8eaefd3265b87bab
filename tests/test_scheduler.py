import pytest
import torch

from ablate.techniques import scheduler as schedulers


def _opt(lr=0.1):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def _lrs(sched, opt, steps):
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("total", [1, 2, 4, 100])
def test_onecycle_peaks_at_optim_lr_and_survives_tiny_runs(total):
    opt = _opt()
    lrs = _lrs(schedulers.onecycle(opt, total_steps=total), opt, total)
    assert max(lrs) <= 0.1 + 1e-9 and lrs[0] == pytest.approx(0.1 / 25)
    if total == 100:
        assert max(lrs) == pytest.approx(0.1, rel=1e-3) and lrs[-1] < 1e-4


def test_cosine_warms_up_then_decays_to_min_ratio():
    opt = _opt()
    lrs = _lrs(schedulers.cosine(opt, total_steps=110, warmup_steps=10, min_ratio=0.1), opt, 111)
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert lrs[110] == pytest.approx(0.01)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_step_multiplies_by_gamma_at_milestones():
    opt = _opt()
    lrs = _lrs(schedulers.step(opt, total_steps=100, milestones=(0.5, 0.75), gamma=0.1), opt, 100)
    assert (
        lrs[49] == pytest.approx(0.1)
        and lrs[50] == pytest.approx(0.01)
        and lrs[75] == pytest.approx(0.001)
    )

"""Options do exactly what they say and nothing else: scheduler cadence, seeds, precision, budgets."""

from __future__ import annotations

import pytest
import torch

from onthefly import Trainer
from onthefly.demos.boring import boring_setup

def _fit(**trainer_kwargs):
    model, opt, loss, loader = boring_setup(n=64, batch_size=16)  # 4 batches an epoch
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    kwargs = dict(port=0, verbose=False, serve=False)
    kwargs.update(trainer_kwargs)
    result = Trainer("t", "opts", **kwargs).fit(model, opt, loss, loader, scheduler=sched)
    return result, opt

def test_scheduler_steps_per_epoch_by_default_and_per_step_when_asked():
    _, opt = _fit(max_epochs=2)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**2)
    _, opt = _fit(max_epochs=2, scheduler_interval="step")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**8)

def test_max_steps_stops_mid_epoch():
    result, _ = _fit(max_steps=6)
    assert result.steps == 6 and result.epochs == 1

def test_seed_is_applied_only_when_given():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    Trainer("t", "noseed", max_steps=1, serve=False, verbose=False)  # constructing touches no RNG
    assert torch.equal(torch.rand(1), expected_next)
    a, _ = _fit(max_steps=3, seed=5)
    b, _ = _fit(max_steps=3, seed=5)
    assert a.steps == b.steps == 3

def test_bf16_autocast_on_cpu_trains_with_finite_per_sample_losses():
    result, _ = _fit(max_steps=4, precision="bf16-mixed")
    assert result.steps == 4

def test_bad_configuration_names_the_fix():
    with pytest.raises(ValueError, match="exactly one budget"):
        Trainer("t", "x")
    with pytest.raises(ValueError, match="exactly one budget"):
        Trainer("t", "x", max_epochs=1, max_steps=1)
    with pytest.raises(ValueError, match="loopback only"):
        Trainer("t", "x", max_steps=1, host="0.0.0.0")
    with pytest.raises(ValueError, match="precision"):
        Trainer("t", "x", max_steps=1, precision="fp8")
    model, opt, _, loader = boring_setup(n=16)
    with pytest.raises(TypeError, match="loss_fn"):
        Trainer("t", "x", max_steps=1, serve=False, verbose=False).fit(model, opt, None, loader)

def test_unsplittable_batch_says_to_pass_step_fn():
    model, opt, loss, _ = boring_setup(n=16)
    loader = torch.utils.data.DataLoader(torch.randn(16, 16), batch_size=4)  # no targets
    with pytest.raises(TypeError, match="step_fn"):
        Trainer("t", "x", max_steps=1, serve=False, verbose=False).fit(model, opt, loss, loader)

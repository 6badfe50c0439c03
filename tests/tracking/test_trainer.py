"""Trainer(track=...): a tiny model trained with tracking on records params, per-step metrics, val/test
results, logs and status into one Experiment named after the run; weights are bit-identical on or off."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import boring_dataset, boring_setup
from onthefly.runtime.hooks import RunHook
from onthefly.tracking import Experiment, Status
from onthefly.tracking.store import LocalStore


def _fit(seed: int = 3, **trainer_kwargs):
    model, opt, loss_fn, loader = boring_setup(seed=seed, n=128, batch_size=16)
    val = DataLoader(boring_dataset(64, seed=1), batch_size=32)
    trainer = Trainer("track", "tiny", max_epochs=2, serve=False, verbose=False, **trainer_kwargs)
    result = trainer.fit(model, opt, loss_fn, loader, val_loader=val, test_loader=val, do_test_after=True)
    return trainer, model, result


class WarnAtStep3(RunHook):
    def on_step_end(self, ctx):
        if ctx.step == 3:
            logging.getLogger("user.code").warning("lr looks high")


def test_fit_records_params_metrics_results_and_status(dash):
    trainer, model, result = _fit(track={"dash_root": dash, "durable": False, "tags": ["tiny"]},
                                  hooks=[WarnAtStep3()])
    exp = trainer.experiment
    identity = trainer.run.identity
    assert exp.prefix == f"tester/{identity.run_id}"  # one run identity: <owner>/<project>/<run>/<stamp>
    assert exp.prefix.startswith("tester/track/tiny/")
    record = LocalStore(dash).get_experiment(exp.prefix)  # one store, read by anyone
    assert record.status is Status.COMPLETED and record.tags == ["tiny"]
    assert record.metadata["onthefly_run_id"] == identity.run_id

    params = exp.params.get()
    assert params["trainer.max_epochs"] == 2 and params["trainer.accumulate_grad_batches"] == 1
    assert params["optimizer.class"] == "SGD" and "trainer.max_steps" not in params
    assert params["optimizer.lr"] == 0.05 and params["optimizer.momentum"] == 0.9
    assert params["model.parameters"] == sum(p.numel() for p in model.parameters())
    assert params["batch_size"] == 16 and params["run_id"] == identity.run_id

    train = exp.metrics("train").read_table().to_pylist()
    assert [row["step"] for row in train] == list(range(1, result.steps + 1)) and result.steps == 16
    assert [row["epoch"] for row in train] == [0] * 8 + [1] * 8
    assert all(math.isfinite(row["loss"]) and row["lr"] == 0.05 and row["grad_norm"] > 0
               and row["samples_per_second"] > 0 and row["batch_size"] == 16 for row in train)
    val = exp.metrics("val").read_table().to_pylist()
    assert len(val) == 2 and val[-1]["loss"] == pytest.approx(result.val.loss)
    test = exp.metrics("test").read_table().to_pylist()
    assert len(test) == 1 and test[0]["loss"] == pytest.approx(result.test.loss)
    messages = [row["message"] for row in exp.logs.read()]
    assert messages[0].startswith("fit started") and messages[-1] == "fit finished"
    assert "finished" in messages and "epoch started: 1" in messages  # lifecycle events, through the bus
    captured = [row for row in exp.logs.read() if row["message"] == "lr looks high"]  # the user's logging
    assert captured[0]["level"] == "warn" and captured[0]["metadata"] == {"logger": "user.code", "step": 3}


def test_weights_are_bit_identical_with_tracking_on_or_off(dash):
    _, plain, _ = _fit(seed=5)
    _, tracked, _ = _fit(seed=5, track={"dash_root": dash, "durable": False})
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), tracked.state_dict().values()))


def _fit_raising(dash, run_name: str, at_call: int, error: BaseException) -> Trainer:
    """Fit with tracking on; the step function raises ``error`` on its ``at_call``-th call."""
    model, opt, loss_fn, loader = boring_setup(seed=0, n=128, batch_size=16)
    calls = {"n": 0}

    def step(model, batch, loss):
        calls["n"] += 1
        if calls["n"] == at_call:
            raise error
        x, y = batch
        return loss(model(x), y)

    trainer = Trainer("track", run_name, max_epochs=1, serve=False, verbose=False,
                      track={"dash_root": dash, "durable": False})
    with pytest.raises(type(error)):
        trainer.fit(model, opt, loss_fn, loader, step_fn=step)
    return trainer


def test_a_failing_fit_records_failed_and_keeps_the_steps_before(dash):
    trainer = _fit_raising(dash, "boom", 4, FloatingPointError("loss exploded"))
    record = LocalStore(dash).get_experiment(trainer.experiment.prefix)
    assert (record.status, record.error) == (Status.FAILED, "FloatingPointError: loss exploded")
    assert [r["step"] for r in trainer.experiment.metrics("train").read_table().to_pylist()] == [1, 2, 3]
    assert any(r["level"] == "error" and "loss exploded" in r["message"] for r in trainer.experiment.logs.read())


def test_an_experiment_you_pass_is_used_and_left_open(dash):
    exp = Experiment(prefix="alice/sweeps/lr-0.05", dash_root=dash, durable=False).run.start()
    model, opt, loss_fn, loader = boring_setup(seed=0, n=64, batch_size=16)
    trainer = Trainer("track", "mine", max_steps=3, serve=False, verbose=False, track=exp)
    trainer.fit(model, opt, loss_fn, loader)
    assert trainer.experiment is exp and exp.is_running  # you started it, you close it
    assert exp.metrics("train").read()["totalDataPoints"] == 3
    exp.metrics("train").log(loss=0.0, step=99)  # still yours to write to
    exp.run.complete()
    assert LocalStore(dash).get_experiment("alice/sweeps/lr-0.05").status is Status.COMPLETED


def test_tracking_is_off_by_default_and_bad_values_are_refused(dash, monkeypatch):
    monkeypatch.chdir(dash.parent)
    trainer, _, _ = _fit()
    assert trainer.experiment is None and not (dash.parent / ".dash").exists()
    with pytest.raises(TypeError, match="track must be True, a dict"):
        _fit(track="yes")


def test_keyboard_interrupt_records_cancelled(dash):
    trainer = _fit_raising(dash, "ctrl-c", 3, KeyboardInterrupt())
    assert LocalStore(dash).get_experiment(trainer.experiment.prefix).status is Status.CANCELLED
    assert trainer.experiment.metrics("train").read()["totalDataPoints"] == 2


def test_tracking_trouble_never_stops_training(dash):
    """The user closes their experiment mid-run: training goes on, tracking reports instead of raising."""
    exp = Experiment(prefix="alice/p/closed-early", dash_root=dash, durable=False).run.start()

    class CloseAtStep2(RunHook):
        def on_step_end(self, ctx):
            if ctx.step == 2:
                ctx.run.bus.drain()
                exp.run.complete()

    model, opt, loss_fn, loader = boring_setup(seed=0, n=128, batch_size=16)
    with pytest.warns(RuntimeWarning, match="tracking could not record an event: NotRunning"):
        result = Trainer("track", "closed", max_steps=6, serve=False, verbose=False, track=exp,
                         hooks=[CloseAtStep2()]).fit(model, opt, loss_fn, loader)
    assert result.steps == 6 and exp.status is Status.COMPLETED
    assert [r["data"]["step"] for r in exp.metrics("train").read()["data"]] == [1, 2]

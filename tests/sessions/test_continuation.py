"""Bit-identical continuation: train N steps, export, resume in a fresh process, train M more; the
weights equal an uninterrupted N+M run exactly (CPU, dropout, momentum, per-epoch scheduler, val)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from onthefly import RunHook, Trainer
from onthefly.sessions import export_session, sessions_of
from sessions.helpers import same, setup, weights

CHILD = Path(__file__).with_name("resume_child.py")
TOTAL = 41  # 16 batches per epoch: the runs cross two epoch boundaries


def _fit(steps: int, workers: int, persistent: bool):
    model, opt, loss, loader, sched, val = setup(workers, persistent=persistent)
    trainer = Trainer("t", "cont", max_steps=steps, seed=5, serve=False, verbose=False)
    trainer.fit(model, opt, loss, loader, val_loader=val, scheduler=sched)
    return trainer, model


@pytest.mark.parametrize("workers, persistent, first", [
    (0, False, 21),   # mid-epoch (epoch 1, batch 5)
    (2, False, 21),   # mid-epoch with worker processes
    (2, True, 19),    # mid-epoch with persistent workers (no new base seed after the first epoch)
    (0, False, 32),   # after the last batch of epoch 1, before its scheduler step and validation
])
def test_resume_in_a_fresh_process_equals_an_uninterrupted_run(tmp_path, workers, persistent, first):
    _, full_model = _fit(TOTAL, workers, persistent)
    full = weights(full_model)
    trainer, part_model = _fit(first, workers, persistent)
    part = weights(part_model)
    bundle = tmp_path / "part.onthefly"
    export_session(trainer, bundle)

    out = tmp_path / "resumed.pt"
    proc = subprocess.run([sys.executable, str(CHILD), str(bundle), str(out), str(workers),
                           "1" if persistent else "0", str(TOTAL)],
                          capture_output=True, text=True, timeout=180, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = torch.load(out, weights_only=True)
    assert not same(resumed, part), "the resumed run did not train"
    assert same(resumed, full), "continuation diverged from the uninterrupted run"

    import json

    report = json.loads(Path(str(out) + ".json").read_text())
    assert report["metric_steps"] == TOTAL  # the metric history continues across the export
    assert [e["origin"] for e in report["lineage"]] == ["new", "resumed"]
    assert report["lineage"][-1]["from_step"] == first


def test_resuming_a_finished_budget_trains_nothing_more(tmp_path):
    trainer, model = _fit(9, 0, False)
    bundle = tmp_path / "done.onthefly"
    export_session(trainer, bundle)
    before = weights(model)
    m2, opt, loss, loader, sched, val = setup()
    result = Trainer("t", "again", max_steps=9, serve=False, verbose=False).fit(
        m2, opt, loss, loader, scheduler=sched, resume_from=bundle)
    assert result.steps == 9 and same(weights(m2), before)


@pytest.mark.parametrize("persistent", [False, True])
def test_resume_at_an_epoch_boundary_equals_an_uninterrupted_run(tmp_path, persistent):
    def fit(epochs, resume=None, seed=5):
        model, opt, loss, loader, sched, val = setup(2, persistent=persistent)
        trainer = Trainer("t", "ep", max_epochs=epochs, seed=seed, serve=False, verbose=False)
        trainer.fit(model, opt, loss, loader, val_loader=val, scheduler=sched, resume_from=resume)
        return trainer, model

    _, full = fit(3)
    trainer, part = fit(2)
    export_session(trainer, tmp_path / "e.onthefly")
    _, resumed = fit(3, resume=tmp_path / "e.onthefly", seed=77)
    assert not same(weights(resumed), weights(part))
    assert same(weights(resumed), weights(full))


def test_an_import_right_after_a_step_keeps_only_the_bundles_metric_history(tmp_path):
    # Imported on the training thread at the end of step 5, while step 5's metrics (at least) still wait in
    # the bus for its pump: they belong to the history being replaced and must not land in the new one.
    n = 21
    first, _ = _fit(n, 0, False)
    bundle = tmp_path / "first.onthefly"
    export_session(first, bundle)

    class ImportAtStepFive(RunHook):
        def on_step_end(self, ctx) -> None:
            if ctx.step == 5:
                sessions_of(trainer).import_session(bundle)

    model, opt, loss, loader, sched, val = setup()
    trainer = Trainer("t", "into", max_steps=n, seed=123, serve=False, verbose=False, hooks=[ImportAtStepFive()])
    result = trainer.fit(model, opt, loss, loader, val_loader=val, scheduler=sched)
    assert result.steps == n  # continued at the bundle's step 21: the budget was spent
    history = sessions_of(trainer).session.history
    assert history.metric_steps == n and history.metric_state()["step"].tolist() == list(range(1, n + 1))

"""Loss sketches fed from a real run's events: KLL quantiles within their rank error of the exact ones,
histograms that count every loss, top-k unique by sample, per-epoch, per-evaluation and per-step views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import Lab
from onthefly.lab.sketches import LossSketches
from onthefly.runtime.errors import FailedPrecondition, InvalidArgument
from onthefly.sessions import Sessions


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    torch.manual_seed(0)
    data = boring_dataset(400, seed=2)
    model = BoringModel()
    lab = Lab(part_rows=500)
    trainer = Trainer("t", "sk", max_epochs=3, serve=False, verbose=False, seed=0,
                      hooks=[Sessions(store=tmp_path_factory.mktemp("store")), lab])
    trainer.fit(model, torch.optim.SGD(model.parameters(), lr=0.05), torch.nn.CrossEntropyLoss(),
                DataLoader(data, batch_size=32, shuffle=True), val_loader=DataLoader(data, batch_size=100))
    return lab, data


def test_run_and_epoch_quantiles_match_the_recorded_losses(fitted):
    lab, data = fitted
    every = lab.history.table("train")
    losses = every.column("loss").to_numpy()
    q = lab.sketches.quantiles("train", (0.1, 0.5, 0.9), scope="run")
    assert q.count == len(losses) == 3 * len(data) and not q.exact
    for rank, value in zip(q.ranks, q.values):  # exact below k=200's retained items; rank error bound anyway
        assert abs(np.mean(losses <= value) - rank) < 0.02
    epoch1 = losses[every.column("epoch").to_numpy() == 1]
    q1 = lab.sketches.quantiles("train", (0.5,), scope="epoch", epoch=1)
    assert q1.count == len(epoch1) and abs(np.mean(epoch1 <= q1.values[0]) - 0.5) < 0.02
    assert lab.sketches.quantiles("train", scope="epoch").count == len(data)  # the latest epoch
    with pytest.raises(InvalidArgument, match="epochs recorded: 0, 1, 2"):
        lab.sketches.quantiles("train", scope="epoch", epoch=7)


def test_histograms_count_every_loss(fitted):
    lab, data = fitted
    latest = lab.sketches.histogram("train", 12)
    assert latest.exact and latest.total == latest.counts.sum() == len(data) and len(latest.edges) == 13
    run = lab.sketches.histogram("train", 8, scope="run")
    assert not run.exact and run.counts.sum() == run.total == 3 * len(data)
    log = lab.sketches.histogram("train", 8, log_scale=True)
    assert np.allclose(np.diff(np.log(log.edges)), np.log(log.edges[1] / log.edges[0]))
    assert log.counts.sum() == len(data)
    val = lab.sketches.histogram("val", 5, scope="eval")
    assert val.counts.sum() == len(data)
    with pytest.raises(InvalidArgument, match="bins"):
        lab.sketches.histogram("train", 0)


def test_topk_is_unique_by_sample_and_ranked(fitted):
    lab, data = fitted
    indices, last, count, mean = lab.sketches.per_sample("train")
    assert len(indices) == len(data) and (count == 3).all()
    top = lab.sketches.topk("train", 10)
    assert len(np.unique(top.index)) == 10 and np.all(np.diff(top.value) <= 0)
    assert np.array_equal(np.sort(top.value), np.sort(last)[-10:])
    low = lab.sketches.topk("train", 5, by="mean", largest=False)
    assert np.allclose(np.sort(low.value), np.sort(mean.astype(np.float32))[:5])
    # the latest loss of a sample is its last entry in the history
    i = int(top.index[0])
    assert lab.history.trajectory(i).splits["train"].loss[-1] == top.value[0]


def test_step_bands_and_empty_state():
    sketches = LossSketches()
    with pytest.raises(FailedPrecondition, match="no train per-sample losses"):
        sketches.quantiles("train")
    with pytest.raises(InvalidArgument, match="unknown split"):
        sketches.topk("dev")
    assert len(sketches.step_bands().step) == 0


def test_step_bands_follow_each_step(fitted):
    lab, data = fitted
    bands = lab.sketches.step_bands()
    steps = 3 * int(np.ceil(len(data) / 32))
    assert len(bands.step) == steps and bands.values.shape == (steps, 5)
    assert np.all(np.diff(bands.values, axis=1) >= 0)  # quantiles ordered within each step
    step = int(bands.step[4])
    exact = np.quantile(lab.history.step_losses(step).loss, bands.ranks)
    assert np.allclose(bands.values[4], exact, atol=1e-6)
    thin = lab.sketches.step_bands(max_points=7)
    assert len(thin.step) == 7 and thin.step[0] == bands.step[0] and thin.step[-1] == bands.step[-1]


def test_folds_carry_an_open_step_and_keep_every_loss(monkeypatch):
    """Batches folded in many small folds (a step's micro-batches split across them, uneven sizes, a
    sample repeated in one fold) give the same figures as the exact computation."""
    from onthefly.lab import sketches as module
    from onthefly.runtime.events import Event, EventKind, SampleLosses

    monkeypatch.setattr(module, "FOLD_ROWS", 50)
    rng = np.random.default_rng(3)
    sk = LossSketches()
    per_step, every, last = {}, [], {}
    for step in range(40):
        for micro in range(3):  # accumulate_grad_batches=3: three events share a step
            n = int(rng.integers(5, 30))
            index = rng.integers(0, 60, n)
            losses = rng.gamma(2.0, 1.0, n).astype(np.float32)
            sk.observe([Event(EventKind.SAMPLE_LOSSES, step, step // 20, 0.0, SampleLosses("train", index, losses))])
            per_step.setdefault(step, []).append(losses)
            every.append(losses)
            last.update(zip(index.tolist(), losses.tolist()))
    bands = sk.step_bands(max_points=1000)
    assert bands.step.tolist() == list(range(40))
    exact = np.stack([np.quantile(np.concatenate(per_step[s]), bands.ranks) for s in range(40)])
    assert np.allclose(bands.values, exact, atol=1e-5)
    assert sk.quantiles("train", scope="run").count == sum(len(v) for v in every)
    indices, latest, counts, _ = sk.per_sample("train")
    assert dict(zip(indices.tolist(), latest.tolist())) == pytest.approx(last)
    assert counts.sum() == sum(len(v) for v in every)

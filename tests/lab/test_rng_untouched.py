"""The lab's own work on the training thread leaves the user's random numbers alone, even when the user's
dataset draws from every global RNG (augmentations): reading a sample for the dashboard, a fork and a
comparison at a step boundary end the run with the same weights as a run without them."""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, random_split

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from lab.helpers import APPLIED, score_and_discover, step_to


class Jittered(Dataset):
    """boring_dataset with an augmentation drawn from torch, numpy and random, as user transforms do."""

    def __init__(self, n: int = 300) -> None:
        self.base = boring_dataset(n, seed=2)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x + 0.01 * (torch.randn(()) + float(np.random.rand()) + random.random()), y


def _final_weights(live_run, tmp_path, act) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = BoringModel()
    train, val = random_split(Jittered(), [0.7, 0.3], generator=torch.Generator().manual_seed(0))
    trainer = Trainer("t", "rng", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(train, batch_size=20, shuffle=True), val_loader=DataLoader(val, batch_size=64))
    step_to(run, 10)
    act(run)
    step_to(run, 25)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    run.client.control.Stop(control_pb2.StopRequest(skip_test=True))
    run.thread.join(60)
    return weights


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_reading_samples_leaves_the_runs_numbers_unchanged(live_run, tmp_path):
    def read_samples(run):
        lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
        for index in (3, 7):
            assert lab.GetSample(lab_pb2.GetSampleRequest(index=index)).index == index

    untouched = _final_weights(live_run, tmp_path / "a", lambda run: None)
    assert _same(untouched, _final_weights(live_run, tmp_path / "b", read_samples))


def test_a_fork_and_a_comparison_leave_an_augmenting_runs_numbers_unchanged(live_run, tmp_path):
    def fork_and_compare(run):
        score_and_discover(run)
        res = pb_grpc.ResolutionServiceStub(run.client.channel)
        assert res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40)).receipt.status == APPLIED
        compared = res.Compare(pb.CompareRequest(extra=40, resolutions=["continue", "fork-route"]))
        assert compared.receipt.status == APPLIED, compared.receipt.reason

    untouched = _final_weights(live_run, tmp_path / "a", score_and_discover)
    assert _same(untouched, _final_weights(live_run, tmp_path / "b", fork_and_compare))

"""Lightning on one device with shuffle=True: per-sample losses carry the dataset index of each sample,
followed from the user's sampler as the native Trainer follows it (issue 22, item 14)."""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler, Subset

from onthefly.client import sample_arrays
from onthefly.demos.boring import boring_dataset
from onthefly.integrations.lightning.demo import LitBoring
from onthefly.v1 import control_pb2, telemetry_pb2

T = telemetry_pb2


class SeesBatches(LitBoring):
    """Keeps the inputs of every training batch, to check each reported index against the data."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0].detach().clone())
        return super().training_step(batch, batch_idx)


@pytest.mark.parametrize("workers", [0, 2])
def test_shuffled_loader_reports_each_samples_dataset_index(lit_run, workers):
    L.seed_everything(0)
    model = SeesBatches()
    data = boring_dataset(96)
    subset = Subset(data, list(range(16, 96)))  # 80 samples: loader index i is base index 16 + i
    loader = DataLoader(subset, batch_size=16, shuffle=True, num_workers=workers)
    run = lit_run(model, loader, trainer_kwargs={"max_epochs": 2})
    stream = run.client.telemetry.Subscribe(T.SubscribeRequest(after_seq=0))
    run.client.control.Resume(control_pb2.ResumeRequest())
    events = []
    for frame in stream:
        events.extend(frame.events)
        if any(e.WhichOneof("payload") == "lifecycle" and e.lifecycle.kind == T.LIFECYCLE_KIND_FINISHED
               for e in frame.events):
            break
    stream.cancel()
    run.join()
    train = [sample_arrays(e.sample_losses)[0] for e in events
             if e.WhichOneof("payload") == "sample_losses" and e.sample_losses.split == "train"]
    assert len(train) == len(model.seen) == 10
    for indices, inputs in zip(train, model.seen):
        assert torch.equal(data.tensors[0][torch.from_numpy(indices.copy())], inputs)  # the very samples trained on
    for epoch in (train[:5], train[5:]):
        assert sorted(i for batch in epoch for i in batch.tolist()) == list(range(16, 96))
    assert train[0].tolist() != list(range(16, 32))  # shuffled, not sequential
    assert type(loader.batch_sampler.sampler) is RandomSampler  # the user's sampler is back in its slot

"""LabService against a real server on port 0 and a real tiny model: scoring at a step boundary, regions,
statistics computed on the server, trajectories, slices out and back in, and clear errors."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import Lab, lab_of
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc, receipt_pb2
from onthefly.v1.run_pb2 import RUN_STATE_PAUSED as PAUSED
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED
TRAIN = lab_pb2.SAMPLE_SPLIT_TRAIN


def _start(live_run, tmp_path, steps_paused: int = 30):
    torch.manual_seed(0)
    base = boring_dataset(240, seed=0)
    train, val = random_split(base, [0.75, 0.25], generator=torch.Generator().manual_seed(0))
    model = BoringModel()
    trainer = Trainer("t", "lab", max_epochs=1000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.SGD(model.parameters(), lr=0.05), torch.nn.CrossEntropyLoss(),
                   DataLoader(train, batch_size=16, shuffle=True), val_loader=DataLoader(val, batch_size=32))
    status = lambda: run.client.control.GetStatus(control_pb2.GetStatusRequest()).status  # noqa: E731
    run.client.control.Step(control_pb2.StepRequest(steps=steps_paused))
    wait_until(lambda: status().state == PAUSED and status().step == steps_paused, what="the steps")
    return run, lab_pb2_grpc.LabServiceStub(run.client.channel), train, val


def test_score_regions_statistics_trajectory_and_slices(live_run, tmp_path):
    run, lab, train, val = _start(live_run, tmp_path)  # 180 train samples: 12 batches an epoch, 30 steps
    scored = lab.Score(lab_pb2.ScoreRequest(splits=[TRAIN, lab_pb2.SAMPLE_SPLIT_VAL]))
    assert scored.receipt.status == APPLIED and scored.receipt.applied_step == 30
    by_split = {s.split: s for s in scored.scores}
    assert by_split[TRAIN].samples == len(train) and by_split[lab_pb2.SAMPLE_SPLIT_VAL].samples == len(val)
    assert by_split[TRAIN].step == 30 and len(by_split[TRAIN].state_hash) == 64 and by_split[TRAIN].inputs_kept

    found = lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=4, ratio=1.0, seed=3)).discovery
    assert found.regions and found.regions[0].region_id == "r1" and found.samples == len(train)
    again = lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=4, ratio=1.0, seed=3)).discovery
    assert [(r.region_id, r.size, r.mean_loss) for r in again.regions] == \
        [(r.region_id, r.size, r.mean_loss) for r in found.regions]  # same seed, same weights: same regions
    assert lab.ListRegions(lab_pb2.ListRegionsRequest()).discovery == again
    described = lab.GetRegion(lab_pb2.GetRegionRequest(region_id="r1")).region
    assert described.summary.size == found.regions[0].size and sum(described.class_mix.values()) == described.summary.size
    assert described.examples and described.summary.sentence.startswith("r1:")
    assert described.trend in ("getting better", "getting worse", "flat", "unknown")
    assert described.summary.verdict in ("regime", "likely label noise - do not upweight")  # lab.noise's verdict
    assert 0.0 <= described.noise_fraction <= 1.0 and found.regions[0].verdict == described.summary.verdict
    assert lab_of(run.trainer.run).verdicts()["r1"].verdict == described.summary.verdict

    q = lab.Quantiles(lab_pb2.QuantilesRequest(split=TRAIN, ranks=[0.1, 0.5, 0.9]))
    assert q.count == 2 * len(train) + 6 * 16 and q.min <= q.values[0] <= q.values[1] <= q.values[2] <= q.max and not q.exact
    h = lab.Histogram(lab_pb2.HistogramRequest(split=TRAIN, bins=10))
    assert len(h.edges) == 11 and sum(h.counts) == h.total == len(train) and h.exact  # each sample's latest loss
    top = lab.TopK(lab_pb2.TopKRequest(split=TRAIN, k=5))
    assert len(set(top.indices)) == 5 and list(top.losses) == sorted(top.losses, reverse=True)
    assert set(top.indices) <= set(train.indices)
    bands = lab.LossBands(lab_pb2.LossBandsRequest(max_points=10))
    assert len(bands.steps) == 10 and len(bands.values) == 10 * len(bands.ranks)

    i = int(top.indices[0])
    traj = lab.SampleTrajectory(lab_pb2.SampleTrajectoryRequest(index=i, splits=[TRAIN]))
    assert traj.index == i and len(traj.series) == 1 and len(traj.series[0].steps) >= 1
    assert traj.series[0].losses[-1] == pytest.approx(top.losses[0])

    chunks = list(lab.ExportSlice(lab_pb2.ExportSliceRequest(name="r1", format=lab_pb2.SLICE_FORMAT_PARQUET,
                                                             columns=["label", "loss", "region", "loss_history"])))
    data = b"".join(c.data for c in chunks)
    assert chunks[0].rows == found.regions[0].size and chunks[0].total_bytes == len(data)
    table = pq.read_table(io.BytesIO(data))
    lab_obj = lab_of(run.trainer.run)
    assert sorted(table.column("index").to_pylist()) == sorted(lab_obj.region("r1").indices.tolist())
    assert set(table.column("region").to_pylist()) == {"r1"}
    assert all(len(h) >= 1 for h in table.column("loss_history").to_pylist())
    for fmt in (lab_pb2.SLICE_FORMAT_CSV, lab_pb2.SLICE_FORMAT_JSON, lab_pb2.SLICE_FORMAT_PARQUET):
        blob = b"".join(c.data for c in lab.ExportSlice(lab_pb2.ExportSliceRequest(name="r1", format=fmt)))
        back = lab.ImportSlice(lab_pb2.ImportSliceRequest(name=f"mine{fmt}", format=fmt, data=blob)).slice
        assert back.size == found.regions[0].size and back.split == TRAIN
        assert sorted(lab_obj.slice_of(f"mine{fmt}").indices.tolist()) == sorted(lab_obj.region("r1").indices.tolist())

    i = int(train.indices[0])
    sample = lab.GetSample(lab_pb2.GetSampleRequest(index=i))
    x, y = train.dataset[i]
    assert list(sample.shape) == [16] and sample.label == int(y) and not sample.image
    assert np.allclose(sample.values, x.numpy())

    band = lab.Select(lab_pb2.SelectRequest(name="hard", loss_band=lab_pb2.LossBand(low_quantile=0.8,
                                                                                     high_quantile=1.0))).slice
    assert band.name == "hard" and 0.15 * len(train) <= band.size <= 0.25 * len(train)
    region = lab.Select(lab_pb2.SelectRequest(name="reg", region=lab_pb2.RegionRule(region_id="r1"))).slice
    assert region.size == found.regions[0].size


def test_bad_input_is_a_clear_status_and_nothing_recorded_is_lost(live_run, tmp_path):
    run, lab, train, _ = _start(live_run, tmp_path, steps_paused=5)

    def code(call, request):
        with pytest.raises(grpc.RpcError) as info:
            result = call(request)
            if hasattr(result, "__next__"):
                list(result)
        return info.value.code(), info.value.details()

    assert code(lab.ListRegions, lab_pb2.ListRegionsRequest())[0] == grpc.StatusCode.FAILED_PRECONDITION
    c, why = code(lab.Score, lab_pb2.ScoreRequest(layer="nope"))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "no layer named 'nope'" in why
    c, why = code(lab.Score, lab_pb2.ScoreRequest(splits=[lab_pb2.SAMPLE_SPLIT_TEST]))
    assert c == grpc.StatusCode.FAILED_PRECONDITION and "test_loader" in why
    assert lab.Score(lab_pb2.ScoreRequest()).receipt.status == APPLIED
    c, why = code(lab.DiscoverRegions, lab_pb2.DiscoverRegionsRequest(k=100_000))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "more than the" in why
    lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=3, ratio=1.0))
    c, why = code(lab.GetRegion, lab_pb2.GetRegionRequest(region_id="r99"))
    assert c == grpc.StatusCode.NOT_FOUND and "r1" in why
    c, _ = code(lab.ExportSlice, lab_pb2.ExportSliceRequest(name="r99", format=lab_pb2.SLICE_FORMAT_CSV))
    assert c == grpc.StatusCode.NOT_FOUND
    c, _ = code(lab.ExportSlice, lab_pb2.ExportSliceRequest(name="r1"))
    assert c == grpc.StatusCode.INVALID_ARGUMENT
    c, why = code(lab.ImportSlice, lab_pb2.ImportSliceRequest(name="x", format=lab_pb2.SLICE_FORMAT_PARQUET,
                                                               data=b"not parquet"))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "cannot be read" in why
    c, _ = code(lab.Histogram, lab_pb2.HistogramRequest(bins=100_000))
    assert c == grpc.StatusCode.INVALID_ARGUMENT
    c, _ = code(lab.Quantiles, lab_pb2.QuantilesRequest(ranks=[1.5]))
    assert c == grpc.StatusCode.INVALID_ARGUMENT
    c, _ = code(lab.SampleTrajectory, lab_pb2.SampleTrajectoryRequest(index=-1))
    assert c == grpc.StatusCode.INVALID_ARGUMENT
    c, why = code(lab.GetSample, lab_pb2.GetSampleRequest(index=240))
    assert c == grpc.StatusCode.NOT_FOUND and "has 240 samples" in why
    # the regions and history recorded before the errors are all still there
    assert lab.ListRegions(lab_pb2.ListRegionsRequest()).discovery.samples == len(train)
    assert lab.Histogram(lab_pb2.HistogramRequest()).total == min(len(train), 5 * 16)


def _weights_after(live_run, tmp_path, score: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    base = boring_dataset(160, seed=4)
    train, val = random_split(base, [0.75, 0.25], generator=torch.Generator().manual_seed(4))
    model = BoringModel()  # dropout: any RNG the scoring pass used would show in the weights
    trainer = Trainer("t", "same", max_steps=25, seed=7, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / ("a" if score else "b"), on_pause=False)])
    run = live_run(trainer, model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                   torch.nn.CrossEntropyLoss(), DataLoader(train, batch_size=16, shuffle=True),
                   val_loader=DataLoader(val, batch_size=16))
    run.client.control.Step(control_pb2.StepRequest(steps=7))
    wait_until(lambda: trainer.run.step == 7 and trainer.run.control.state.name == "PAUSED", what="step 7")
    if score:
        stub = lab_pb2_grpc.LabServiceStub(run.client.channel)
        response = stub.Score(lab_pb2.ScoreRequest(splits=[TRAIN, lab_pb2.SAMPLE_SPLIT_VAL], seed=123))
        assert response.receipt.status == APPLIED and response.receipt.applied_step == 7
        assert model.training  # the module's mode is back
    run.client.control.Resume(control_pb2.ResumeRequest())
    run.join()
    return [p.detach().clone() for p in model.parameters()]


def test_a_scoring_pass_leaves_training_bit_identical(live_run, tmp_path):
    plain = _weights_after(live_run, tmp_path, score=False)
    scored = _weights_after(live_run, tmp_path, score=True)
    assert all(torch.equal(a, b) for a, b in zip(plain, scored))

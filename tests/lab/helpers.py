"""Steps the lab's live-run tests share: step a paused run over the API, then score it and find regions."""

from __future__ import annotations

from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc, receipt_pb2
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED


def step_to(run, to: int) -> None:
    """Step the paused run to step ``to`` and wait until it is paused there."""
    trainer = run.trainer
    run.client.control.Step(control_pb2.StepRequest(steps=to - trainer.run.step))
    wait_until(lambda: trainer.run.step == to and trainer.run.control.state.name == "PAUSED", what=f"step {to}")


def score_and_discover(run):
    """Score the train split and discover regions (k=3, every cluster a region, seed 0); the regions found."""
    lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
    assert lab.Score(lab_pb2.ScoreRequest()).receipt.status == APPLIED
    regions = lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=3, ratio=1.0, seed=0)).discovery.regions
    assert regions, "no regions found"
    return regions

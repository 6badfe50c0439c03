"""Lightning DDP (CPU, gloo, 2 processes): rank 0 alone serves; pause and set-lr hit every rank at one step."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading

import pytest

from onthefly.client import connect, sample_arrays
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, receipt_pb2, run_pb2, telemetry_pb2
from support import wait_until

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")
PAUSED = run_pb2.RUN_STATE_PAUSED


@pytest.fixture
def ddp(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    yield proc, tmp_path
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    log.close()


def test_rank0_serves_and_every_rank_follows_its_decisions(ddp):
    proc, out = ddp

    def one_run():
        assert proc.poll() is None, (out / "worker.log").read_text()[-3000:]
        return live_runs()

    runs = wait_until(one_run, timeout=120, interval=0.1, what="rank 0 to serve")
    with connect(address=runs[0].address, token=runs[0].token) as client:
        def status():
            return client.control.GetStatus(control_pb2.GetStatusRequest()).status

        wait_until(lambda: status().state == PAUSED, what="the run to start paused")
        events: list = []

        def read_all():
            for frame in client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(after_seq=0)):
                events.extend(frame.events)
                if any(e.lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_FINISHED for e in frame.events
                       if e.WhichOneof("payload") == "lifecycle"):
                    return

        reader = threading.Thread(target=read_all, daemon=True)
        reader.start()
        client.control.Step(control_pb2.StepRequest(steps=3))
        wait_until(lambda: status().state == PAUSED and status().step == 3, what="3 steps on every rank")
        changed = client.control.SetHyperparameters(control_pb2.SetHyperparametersRequest(values={"lr": 0.0125}))
        assert changed.receipt.status == receipt_pb2.RECEIPT_STATUS_APPLIED and changed.receipt.applied_step == 3
        client.control.Resume(control_pb2.ResumeRequest())
        pause = client.control.Pause(control_pb2.PauseRequest()).receipt.applied_step
        assert pause >= 3
        client.control.Step(control_pb2.StepRequest(steps=2))
        wait_until(lambda: status().state == PAUSED and status().step == pause + 2, what="2 more steps")
        assert len(live_runs()) == 1  # rank 1 never wrote a discovery file
        client.control.Stop(control_pb2.StopRequest())
        reader.join(60)
    assert proc.wait(120) == 0, (out / "worker.log").read_text()[-3000:]

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["served"] for r in ranks] == [True, False]
    assert not ranks[1]["server_code_loaded"]  # rank 1 never even imported the code that binds a port
    assert runs[0].pid == ranks[0]["pid"] != ranks[1]["pid"]
    final = pause + 2
    expected_lrs = [(s, 0.05 if s <= 3 else 0.0125) for s in range(1, final + 1)]
    for r in ranks:
        assert r["steps"] == final
        assert [tuple(row) for row in r["lrs"]] == expected_lrs  # the new lr from step 4 on, on every rank
        assert r["pauses"] == [0, 3, pause, final]  # each pause at the same global step on every rank
    assert ranks[0]["weights"] == ranks[1]["weights"]
    # Rank 1's own telemetry reached the client through rank 0, tagged with its rank: the same steps,
    # and per step the other half of the samples (its DistributedSampler shard).
    steps = {r: [e.step for e in events if e.WhichOneof("payload") == "step_metrics" and e.rank == r] for r in (0, 1)}
    assert steps[0] == steps[1] == list(range(1, final + 1))
    samples = {(e.rank, e.step): set(sample_arrays(e.sample_losses)[0].tolist()) for e in events
               if e.WhichOneof("payload") == "sample_losses" and e.sample_losses.split == "train"}
    for step in range(final):
        assert len(samples[0, step]) == len(samples[1, step]) == 8 and not samples[0, step] & samples[1, step]

"""The first region discovery in a process leaves the user's global RNGs alone: discovery runs on the lab's
worker thread while training goes on, so nothing it does (importing its libraries included) may draw from
them. Checked in a fresh interpreter, where those libraries are not imported yet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import random, sys
import numpy as np, torch, torch.nn as nn
from torch.utils.data import DataLoader
sys.path.insert(0, "tests")
from support import LiveRun, wait_until
from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc

model = BoringModel()
trainer = Trainer("t", "rng", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False)
run = LiveRun(trainer, (model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                        DataLoader(boring_dataset(200), batch_size=20, shuffle=True)), {})
run.client.control.Step(control_pb2.StepRequest(steps=3))
wait_until(lambda: trainer.run.step == 3 and trainer.run.control.state.name == "PAUSED", what="3 steps")
lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
assert lab.Score(lab_pb2.ScoreRequest()).receipt.status == 2
before = (random.getstate(), np.random.get_state()[1].tobytes(), np.random.get_state()[2], torch.get_rng_state())
lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=3, ratio=1.0, seed=0))
after = (random.getstate(), np.random.get_state()[1].tobytes(), np.random.get_state()[2], torch.get_rng_state())
print("random", before[0] == after[0], "numpy", before[1:3] == after[1:3], "torch", torch.equal(before[3], after[3]))
run.client.control.Stop(control_pb2.StopRequest(skip_test=True))
run.join(60)
"""


def test_the_first_discovery_draws_from_no_global_rng(tmp_path):
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "ONTHEFLY_STORE": str(tmp_path / "store")}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "random True numpy True torch True"

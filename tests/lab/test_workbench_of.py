"""A run has one Workbench, even when its first two users ask for it at the same moment (a dashboard's poll
and a CLI fork): neither's specialists, comparison or lineage may land in a workbench the run then forgets."""

from __future__ import annotations

import threading

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab import workbench
from onthefly.lab.lab import lab_of
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2
from support import wait_until


def test_two_first_callers_get_the_same_workbench(live_run, monkeypatch, tmp_path):
    torch.manual_seed(0)
    model = BoringModel()
    trainer = Trainer("t", "bench", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                   DataLoader(boring_dataset(60), batch_size=20))
    run.client.control.Step(control_pb2.StepRequest(steps=1))
    wait_until(lambda: trainer.run.step == 1 and trainer.run.control.state.name == "PAUSED", what="1 step")
    lab = lab_of(trainer.run)

    # Hold both callers inside the constructor together when they can both get there (the race, every time);
    # with one creator at a time the second never arrives and the first goes on after a short wait.
    both_inside = threading.Barrier(2)
    make = workbench.Workbench.__init__

    def held(self, *args, **kwargs):
        make(self, *args, **kwargs)
        try:
            both_inside.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass

    monkeypatch.setattr(workbench.Workbench, "__init__", held)
    got = [None, None]
    callers = [threading.Thread(target=lambda i=i: got.__setitem__(i, workbench.workbench_of(lab)))
               for i in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)
    assert got[0] is not None and got[0] is got[1] is workbench.workbench_of(lab)

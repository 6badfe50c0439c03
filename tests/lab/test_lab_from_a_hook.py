"""The lab's blocking Python calls (score, a fork) work from the training thread itself (a user's hook): they
run at once instead of queueing a command for the very thread that waits for it, which would wait forever."""

from __future__ import annotations

import threading

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import Lab
from onthefly.lab.workbench import workbench_of
from onthefly.runtime.hooks import RunHook
from onthefly.sessions import Sessions


class ScoreEveryThirdStep(RunHook):
    def __init__(self, lab: Lab) -> None:
        self.lab, self.steps = lab, []

    def on_step_end(self, ctx) -> None:
        if ctx.step % 3 == 0:
            self.steps.append((ctx.step, self.lab.score().step))
        if ctx.step == 6:  # a fork too (part 2 blocks the same way)
            self.lab.discover(k=2, ratio=1.0)
            self.forked = workbench_of(self.lab).fork(["r1"], budget=20).ids


def test_scoring_from_a_hook_on_the_training_thread(tmp_path):
    torch.manual_seed(0)
    lab = Lab()
    hook = ScoreEveryThirdStep(lab)
    model = BoringModel()
    trainer = Trainer("t", "hook", max_epochs=2, seed=0, serve=False, verbose=False,
                      hooks=[lab, hook, Sessions(store=tmp_path / "store", on_pause=False)])
    fit = threading.Thread(target=trainer.fit, daemon=True,
                           args=(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                                 DataLoader(boring_dataset(60), batch_size=20)))
    fit.start()
    fit.join(120)
    assert not fit.is_alive(), "fit hung: the hook's score() waited for its own thread"
    assert hook.steps == [(3, 3), (6, 6)] and len(lab.table("train")) == 60
    assert hook.forked == ("s@6:r1",)

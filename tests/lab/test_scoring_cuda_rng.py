"""A scoring pass leaves the user's CUDA random numbers alone, also when it runs before CUDA has started
(a CPU model on a GPU machine): torch.manual_seed would queue the lab's seed for every CUDA device, and
it would replace the user's own seed the moment CUDA starts. Needs a GPU; checked in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = r"""
import sys, torch
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.scoring import score
torch.manual_seed(1)  # the user's seed: CPU now, CUDA once it starts
if sys.argv[1] == "score":
    score(BoringModel(), boring_dataset(64), seed=0)
assert not torch.cuda.is_initialized()
print(torch.randn(4, device="cuda").cpu().tolist())
"""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_scoring_before_cuda_starts_leaves_the_users_cuda_seed():
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}

    def draws(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=root, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]

    assert draws("score") == draws("plain")

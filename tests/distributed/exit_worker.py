"""One rank of an FSDP2 job under the Trainer that records, at interpreter exit, whether the model is
still alive; run by torchrun from test_exit.py.

    torchrun --standalone --nproc-per-node N exit_worker.py OUT

A handler registered before fit runs after onthefly's (atexit runs the last registered first), while the
interpreter is not yet finalizing. It writes OUT/rank<N>.json: ``alive``, whether the model, dropped by
the script and held only by its own reference cycles (FSDP2's) and the job's, was not yet collected.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import weakref

import torch.distributed as dist

from ddp_worker import full_weights, setup
from onthefly.distributed.exit import busy_collective_workers


def main(out: str) -> weakref.ref:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, optimizer, loss_fn, loader, _ = setup(rank, world, fsdp=True)
    from onthefly.trainer.trainer import Trainer

    Trainer("exit", "native", port=0, verbose=False, max_steps=4).fit(model, optimizer, loss_fn, loader, device="cpu")
    full_weights(model)  # the script's last collective, right before it ends
    dist.destroy_process_group()
    return weakref.ref(model)


if __name__ == "__main__":
    out = sys.argv[-1]
    rank = int(os.environ["RANK"])
    model_ref: list[weakref.ref] = []

    def record() -> None:
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"alive": model_ref[0]() is not None, "busy_workers": busy_collective_workers()}, f)

    atexit.register(record)
    model_ref.append(main(out))

"""One rank of a DDP job on CPU (gloo); run by torchrun from the tests in this folder.

    torchrun --standalone --nproc-per-node N ddp_worker.py MODE [STEPS] OUT

MODE ``bare``: the user's plain DDP loop for STEPS steps. MODE ``trainer``: the same model, optimizer,
DistributedSampler and loss under onthefly's Trainer (max_steps=STEPS, no client needed).
MODE ``steer``: Trainer started paused, steered by the test's client until it stops. MODE ``epoch``:
Trainer started paused, one epoch once the test's client resumes it. MODE ``nudge``: like ``trainer``,
started paused, with rank 1's first weight moved after step 12 and parity checked every 5 steps.
MODE ``export``: like ``steer``, every rank seeded alike. MODE ``resume``: every rank resumes from
OUT/../run.onthefly up to STEPS. MODE ``baseline``: ``trainer`` with every rank seeded alike.
MODE ``fsdp-<mode>``: any mode with the model sharded by FSDP2 (``fully_shard``) instead of DDP.
MODE ``rankseed-<mode>``: ``export``, ``resume`` or ``baseline`` with each rank seeded its own way (1 + rank).
MODE ``solo``: every rank a plain (unwrapped) model under ``Trainer(distributed=False)``, started paused,
each steered on its own by the test's client until it stops.
MODE ``scheduled``: ``steer`` with a Sessions checkpoint scheduled every 4 steps.
MODE ``overlap``: ``epoch`` with every rank's DistributedSampler wrongly given rank=0. MODE ``slowdata``:
``trainer`` started paused, rank 1's samples each fetched 3 ms late.
Each rank writes OUT/rank<N>.json: the steps it paused at, the lr of every step, its final weights.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.runtime.hooks import RunHook


class Record(RunHook):
    """What a rank saw: the step of every pause and the lr each step ran with."""

    def __init__(self) -> None:
        self.pauses: list[int] = []
        self.lrs: list[tuple[int, float]] = []
        self._lr = None

    def on_before_optimizer_step(self, ctx, loss) -> bool:
        self._lr = ctx.optimizer.param_groups[0]["lr"]
        return True

    def on_step_end(self, ctx) -> None:
        self.lrs.append((ctx.step, self._lr))

    def on_pause(self, ctx) -> None:
        self.pauses.append(ctx.step)


class Nudge(RunHook):
    """On rank 1 only: a DDP bug in miniature, one weight moved on one rank after a step."""

    def __init__(self, rank: int, at_step: int) -> None:
        self.rank, self.at_step = rank, at_step

    def on_step_end(self, ctx) -> None:
        if self.rank == 1 and ctx.step == self.at_step:
            with torch.no_grad():
                next(ctx.model.parameters())[0, 0] += 1e-3


class SlowItems(torch.utils.data.Dataset):
    """The same samples, each fetched 3 ms late: one rank's slow data source."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i):
        time.sleep(0.003)
        return self.inner[i]


def wrap(model: torch.nn.Module, fsdp: bool) -> torch.nn.Module:
    """DDP, or FSDP2 (``fully_shard`` on each Linear, then the root): parameters sharded across ranks."""
    if not fsdp:
        return DDP(model)
    from torch.distributed.fsdp import fully_shard

    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    return fully_shard(model)


def setup(rank: int, world: int, same_seed: bool = False, overlap: bool = False, slow: bool = False,
          fsdp: bool = False, plain: bool = False):
    torch.manual_seed(0)
    model = BoringModel() if plain else wrap(BoringModel(), fsdp)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dataset = boring_dataset(96)
    if slow:
        dataset = SlowItems(dataset)
    # MODE overlap: the classic mistake, every rank given rank=0, so all train on the same shard.
    sampler = DistributedSampler(dataset, num_replicas=world, rank=0 if overlap else rank, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=8, sampler=sampler)
    # Dropout differs per rank (seed + rank), or every rank seeds alike, as many scripts do.
    torch.manual_seed(1 if same_seed else 1 + rank)
    return model, optimizer, torch.nn.CrossEntropyLoss(), loader, sampler


def bare(steps: int, model, optimizer, loss_fn, loader, sampler) -> None:
    step, epoch = 0, 0
    while step < steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()
            step += 1
            if step == steps:
                return
        epoch += 1


def full_weights(model: torch.nn.Module) -> list[float]:
    """Every rank: the unsharded parameters, in order (FSDP2 parameters are DTensors: gathered)."""
    return torch.cat([p.detach().full_tensor().reshape(-1) for p in model.parameters()]).tolist()


def main(mode: str, out: str, steps: int) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    fsdp = mode.startswith("fsdp-")
    mode = mode.removeprefix("fsdp-")
    per_rank_seed = mode.startswith("rankseed-")
    mode = mode.removeprefix("rankseed-")
    model, optimizer, loss_fn, loader, sampler = setup(
        rank, world, same_seed=mode in ("export", "resume", "baseline") and not per_rank_seed,
        overlap=mode == "overlap",
        slow=mode == "slowdata" and rank == 1, fsdp=fsdp, plain=mode == "solo")
    record = Record()
    report: dict = {"rank": rank, "pid": os.getpid()}
    if mode == "bare":
        bare(steps, model, optimizer, loss_fn, loader, sampler)
    else:
        from onthefly.trainer.trainer import Trainer

        from onthefly.distributed.parity import RankParity

        budget = {"steer": {"max_steps": 10_000}, "export": {"max_steps": 10_000}, "solo": {"max_steps": 10_000},
                  "scheduled": {"max_steps": 10_000},
                  "epoch": {"max_epochs": 1}, "overlap": {"max_epochs": 1}}.get(mode, {"max_steps": steps})
        hooks = [record]
        if mode == "scheduled":  # a checkpoint every 4 steps, each rank seeded its own way
            from onthefly.sessions import Sessions

            hooks.append(Sessions(every_n_steps=4, on_pause=False))
        if mode == "nudge":  # rank 1 moves one weight after step 12; parity is checked every 5 steps
            hooks += [RankParity(every=5), Nudge(rank, at_step=12)]
        trainer = Trainer("ddp", "native", port=0, verbose=False,
                          start_paused=mode in ("steer", "epoch", "nudge", "export", "overlap", "slowdata", "solo",
                                                "scheduled"),
                          hooks=hooks, distributed=mode != "solo", **budget)
        bundle = os.path.join(out, "..", "run.onthefly") if mode == "resume" else None
        result = trainer.fit(model, optimizer, loss_fn, loader, device="cpu", resume_from=bundle)
        report.update(served=trainer.server is not None, world=trainer.world is not None, steps=result.steps, pauses=record.pauses,
                      lrs=record.lrs, server_code_loaded="onthefly.server.host" in sys.modules)
    report["weights"] = full_weights(model) if fsdp else torch.cat(
        [p.detach().reshape(-1) for p in model.parameters()]).tolist()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(report, f)
    dist.destroy_process_group()
    if mode == "bare":
        # The baseline ends without interpreter finalization: gloo's worker threads can release a Work whose
        # tensors need the GIL while Python finalizes, and abort the process ("terminate called without an
        # active exception"; seen once in the bare DDP loop under load, no OnTheFly involved). Runs under
        # OnTheFly exit normally: onthefly/distributed/exit.py guards them, and these tests must see it work.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[-1], int(sys.argv[2]) if len(sys.argv) > 3 else 0)

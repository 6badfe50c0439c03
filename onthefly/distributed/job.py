"""Job: this rank's part in a distributed run, for a training loop (the native Trainer or Lightning).

Every rank: the lockstep (rank 0's decisions at the same step everywhere) and the cross-rank parity
check (``RankParity``), and each rank's part in rank 0's checkpoints (``RankGather``). Rank 0: the roster the
CoordinatorService serves, and its API's address and token put in the job's store once it serves.
Other ranks: a reporter that joins rank 0's run and streams this rank's telemetry there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from onthefly.distributed.exit import collect_before_exit
from onthefly.distributed.gather import GATHER, RankGather
from onthefly.distributed.lockstep import HEARTBEAT, lockstep
from onthefly.distributed.parity import RankParity
from onthefly.distributed.rendezvous import ApiPublisher
from onthefly.distributed.roster import ROSTER, Roster

if TYPE_CHECKING:
    from onthefly.distributed.world import World
    from onthefly.runtime.context import LoopContext
    from onthefly.runtime.run import Run


class Job:
    def __init__(self, world: "World", run: "Run", ctx: "LoopContext", heartbeat: float = HEARTBEAT) -> None:
        self.world, self._run = world, run
        collect_before_exit()  # the job's process group must not be freed while the interpreter finalizes
        self.lockstep = lockstep(world, heartbeat)
        self.boundary = self.lockstep.boundary  # boundary(ctx) -> stop?: call at every step boundary
        gather = RankGather(world, self.lockstep)
        if world.leader:
            ctx.extras[GATHER] = gather
        else:
            self.lockstep.contribute = gather.contribute
        self.roster: Roster | None = None
        self._reporter: Any = None
        self._publisher: ApiPublisher | None = None
        if world.leader:
            self.roster = ctx.extras[ROSTER] = Roster(run, world, str(ctx.device))
        else:
            from onthefly.server.rank_reporter import RankReporter  # a client of rank 0's API

            self._reporter = RankReporter(world, run)
        # Cross-rank parity of weights and gradients: the user's RankParity(every=K) in hooks=, else ours.
        parity = next((h for h in run.hooks.hooks if isinstance(h, RankParity)), None)
        if parity is None:
            parity = RankParity()
            run.hooks.add(parity)
        parity.bind(world, run, self.roster)
        self._parity = parity

    def served(self, address: str | None, token: str | None) -> None:
        """Rank 0, once its server is up (None when it does not serve): the other ranks may join."""
        if self.world.leader:
            self._publisher = ApiPublisher(self.world, self._run, address, token)
            if address is None:
                self.roster = None  # nobody will report: nothing to wait for at the end

    def close(self, grace: float, error: BaseException | None = None) -> None:
        """The loop is over: release the peers; a rank sends its last events, rank 0 waits up to ``grace``
        seconds for them (so they precede the run's end on its stream). ``error``: why rank 0's loop
        failed, shown on its own row of the roster (``onthefly ranks``); else the row says finished."""
        self.lockstep.close()
        self._parity.close(grace)
        if self._reporter is not None:
            self._reporter.close(grace)
        if self.roster is not None:
            self.roster.wait_reports(grace, self.world.connect_store())
            if error is None:
                self.roster.finished(0)
            else:
                self.roster.note(0, f"the run failed here: {type(error).__name__}: {error}"[:500])
        if self._publisher is not None:
            self._publisher.close(grace)

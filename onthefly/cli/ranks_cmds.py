"""`onthefly ranks`: every rank of a distributed run as rank 0 knows it (one line for a single process).

``--rank N`` prints one rank; ``--json`` one JSON object per rank. Exit status 2 when a rank is lost,
so a script can tell a job that lost a process from one that is healthy.
"""

from __future__ import annotations

import json
import time

from onthefly.v1 import coordinator_pb2, coordinator_pb2_grpc

EXIT_RANK_LOST = 2


def _state(value: int) -> str:
    return coordinator_pb2.RankState.Name(value).removeprefix("RANK_STATE_").lower() if value else "unknown"


def cmd_ranks(args) -> int:
    from onthefly.cli.main import CliError, _client

    with _client(args) as client:
        stub = coordinator_pb2_grpc.CoordinatorServiceStub(client.channel)
        listed = stub.ListRanks(coordinator_pb2.ListRanksRequest(), timeout=args.timeout)
    ranks = list(listed.ranks)
    if args.rank is not None:
        ranks = [r for r in ranks if r.rank == args.rank]
        if not ranks:
            raise CliError(f"rank {args.rank} is not in this job: it has ranks 0..{listed.world_size - 1}")
    now = time.time()
    if args.json:
        for r in ranks:
            print(json.dumps({"rank": r.rank, "state": _state(r.state), "host": r.host, "device": r.device,
                              "pid": r.pid, "step": r.step, "samples_per_second": r.samples_per_second,
                              "data_seconds": r.data_seconds, "last_seen": r.last_seen_unix,
                              "dropped_at_source": r.dropped_at_source, "message": r.message}))
    else:
        print(f"{'RANK':>4} {'STATE':9} {'HOST':16} {'DEVICE':8} {'PID':>7} {'STEP':>7} {'SAMPLES/S':>10} "
              f"{'DATA s':>7} {'SEEN':>6}")
        for r in ranks:
            seen = f"{now - r.last_seen_unix:.0f}s" if r.last_seen_unix else "-"
            print(f"{r.rank:>4} {_state(r.state):9} {r.host[:16]:16} {r.device[:8]:8} {r.pid:>7} {r.step:>7} "
                  f"{r.samples_per_second:>10,.0f} {r.data_seconds:>7.3f} {seen:>6}"
                  + (f"  {r.message}" if r.message else ""))
    return EXIT_RANK_LOST if any(r.state == coordinator_pb2.RANK_STATE_LOST for r in ranks) else 0


def register(subparsers) -> None:
    """Add `onthefly ranks` to the CLI's subcommands."""
    p = subparsers.add_parser("ranks", help="the ranks of a distributed run: state, step, throughput",
                              description="List every rank of a distributed run as rank 0 knows it. "
                                          "Exit status 2 when a rank is lost.")
    p.add_argument("--rank", type=int, help="only this rank")
    p.add_argument("--json", action="store_true", help="one JSON object per rank")
    p.set_defaults(func=cmd_ranks)

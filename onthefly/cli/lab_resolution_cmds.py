"""`onthefly lab fork | compare | recommend | apply | lineage`: act on a region, at matched compute.

    onthefly lab fork r1 --budget 5000             a specialist for r1 (the run waits; --background: it does not;
                                                   --checkpoint ID: from a session checkpoint)
    onthefly lab compare [--extra N]               every resolution at the same extra compute, per slice
    onthefly lab recommend                         the one to apply, chosen on validation, and why
    onthefly lab apply fork-route --yes            install it in the live run (a command with a receipt)
    onthefly lab lineage [--dot]                   every model the lab made, as a graph

Each takes ``--json`` (one JSON object per line). Registered into the ``lab`` group by ``lab_cmds``.
"""

from __future__ import annotations

import json
import math

from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from onthefly.v1 import receipt_pb2

# onthefly.lab.resolutions.MENU, spelled out so the CLI starts without importing torch (a test keeps them equal).
MENU = ("continue", "upweight-hard", "upweight-region", "fork-route", "merge-uniform", "merge-fisher", "distill",
        "adapters", "balance-classes")


def _client(args):
    from onthefly.cli.main import _client

    return _client(args)


def _fail(message: str):
    from onthefly.cli.main import CliError

    return CliError(message)


def _stub(client) -> pb_grpc.ResolutionServiceStub:
    return pb_grpc.ResolutionServiceStub(client.channel)


def _applied(what: str, receipt, timeout: float) -> None:
    if receipt.status == receipt_pb2.RECEIPT_STATUS_REJECTED:
        raise _fail(f"{what} rejected: {receipt.reason}")
    if receipt.status != receipt_pb2.RECEIPT_STATUS_APPLIED:
        raise _fail(f"{what} queued as command #{receipt.command_id} but not done within {timeout:g}s; "
                    "it still runs at the next step boundary: read the result later (`onthefly lab lineage`, "
                    "`onthefly lab compare --latest`) or pass a longer --timeout")


def _pct(value: float) -> str:
    return "  n/a" if math.isnan(value) else f"{100 * value:5.1f}"


# -- commands ------------------------------------------------------------------------------------------
def cmd_fork(args) -> int:
    request = pb.ForkRequest(region_ids=args.regions, budget=args.budget, patience=args.patience or 0,
                             background=args.background, seed=args.seed, checkpoint_id=args.checkpoint or "",
                             allowance=args.allowance or 0)
    if args.replay is not None:
        request.replay_fraction = args.replay
    with _client(args) as client:
        response = _stub(client).Fork(request, timeout=args.timeout)
    _applied("fork", response.receipt, args.timeout)
    row = {"step": response.receipt.applied_step, "specialists": list(response.specialist_ids),
           "background": response.background}
    if args.json:
        print(json.dumps(row))
    elif response.background:
        print(f"forking {', '.join(args.regions)} at step {row['step']}: training on a worker thread while the run "
              "goes on (`onthefly lab lineage` lists them when done)")
    else:
        print(f"forked {', '.join(response.specialist_ids)} at step {row['step']} "
              f"({args.budget} sample-gradients each)")
    return 0


def _table_rows(table: pb.ResolutionTable) -> list[dict]:
    names = [s.name for s in table.slices]
    return [{"split": table.split, "resolution": r.name, "description": r.description,
             "accuracy": dict(zip(names, r.accuracy)), "overall": r.overall, "worst_slice": r.worst_slice,
             "worst_accuracy": r.worst_accuracy, "flops_ratio": r.flops_ratio, "time_ratio": r.time_ratio,
             "sample_gradients": r.sample_gradients, "forward_samples": r.forward_samples,
             "state_hash": r.state_hash, "routed": r.routed,
             "best_in": sorted(col for col, best in table.best.items() if best == r.name)} for r in table.rows]


def _print_table(table: pb.ResolutionTable) -> None:
    shown = [s for s in table.slices if s.kind in ("overall", "region", "rest")]
    width = max([len(r.name) for r in table.rows] + [10])
    head = " ".join(f"{s.name[:12]:>12}" for s in shown)
    print(f"{table.split} ({', '.join(f'{s.name}: {s.size}' for s in shown)})")
    print(f"  {'resolution':{width}} {head} {'worst':>18} {'FLOPs':>6} {'time':>6} {'sample-grads':>12}")
    index = {s.name: i for i, s in enumerate(table.slices)}
    for r in table.rows:
        cells = []
        for s in shown:
            mark = "*" if table.best.get(s.name) == r.name else " "
            cells.append(f"{_pct(r.accuracy[index[s.name]])}{mark:>7}")
        worst_mark = "*" if table.best.get("worst") == r.name else " "
        print(f"  {r.name:{width}} {' '.join(cells)} {_pct(r.worst_accuracy)}{worst_mark} {r.worst_slice[:11]:>11} "
              f"{r.flops_ratio:5.2f}x {r.time_ratio:5.2f}x {r.sample_gradients:>12}")
    print("  (* best in the column; accuracy in %; worst over " + ", ".join(table.worst_kinds) + ")")


def cmd_compare(args) -> int:
    with _client(args) as client:
        stub = _stub(client)
        if args.latest:
            comparison = stub.GetComparison(pb.GetComparisonRequest(), timeout=args.timeout).comparison
        else:
            request = pb.CompareRequest(extra=args.extra or 0, resolutions=args.resolutions or [], seed=args.seed,
                                        allowance=args.allowance or 0)
            response = stub.Compare(request, timeout=args.timeout)
            _applied("compare", response.receipt, args.timeout)
            comparison = response.comparison
    if args.json:
        for table in (comparison.validation, comparison.test):
            for row in _table_rows(table) if table.rows else []:
                print(json.dumps({**row, "step": comparison.step, "extra": comparison.extra}, allow_nan=True))
        for name, why in comparison.skipped.items():
            print(json.dumps({"resolution": name, "skipped": why}))
        return 0
    print(f"resolutions from step {comparison.step}, each at {comparison.extra} extra sample-gradients")
    _print_table(comparison.validation)
    if comparison.test.rows:
        _print_table(comparison.test)
    for name, why in comparison.skipped.items():
        print(f"  skipped {name}: {why}")
    for name, why in comparison.blocked.items():
        print(f"  never recommended {name}: {why}")
    return 0


def cmd_recommend(args) -> int:
    with _client(args) as client:
        r = _stub(client).Recommend(pb.RecommendRequest(), timeout=args.timeout)
    row = {"resolution": r.resolution, "reason": r.reason, "split": r.split, "worst_accuracy": r.worst_accuracy,
           "overall": r.overall, "excluded": dict(r.excluded)}
    if args.json:
        print(json.dumps(row, allow_nan=True))
        return 0
    print(f"recommended: {r.resolution}")
    print(f"  {r.reason}")
    for name, why in sorted(r.excluded.items()):
        print(f"  not {name}: {why}")
    print(f"apply it with: onthefly lab apply {r.resolution} --yes")
    return 0


def cmd_apply(args) -> int:
    with _client(args) as client:
        r = _stub(client).Apply(pb.ApplyRequest(resolution=args.resolution, confirm=args.yes), timeout=args.timeout)
    _applied("apply", r.receipt, args.timeout)
    row = {"resolution": args.resolution, "step": r.receipt.applied_step, "kind": r.kind, "state_hash": r.state_hash,
           "replaced_state_hash": r.replaced_state_hash, "record": r.record}
    if args.json:
        print(json.dumps(row))
    else:
        what = "routed model installed as the run's result" if r.kind == "routed" else "weights swapped in"
        print(f"{args.resolution} applied at step {row['step']}: {what} ({r.state_hash[:12]}, was "
              f"{r.replaced_state_hash[:12]})" + (f"; recorded in {r.record}" if r.record else ""))
    return 0


def cmd_lineage(args) -> int:
    with _client(args) as client:
        r = _stub(client).Lineage(pb.LineageRequest(), timeout=args.timeout)
    if args.json:
        for n in r.nodes:
            print(json.dumps({"id": n.id, "kind": n.kind, "parents": list(n.parents), "step": n.step,
                              "state_hash": n.state_hash, "budget": n.budget, "spent": n.spent,
                              "data": {k: json.loads(v) for k, v in n.data.items()}}))
        return 0
    if args.dot:
        print(r.dot)
        return 0
    if not r.nodes:
        print("no models yet: fork a region (`onthefly lab fork r1 --budget N`) or compare (`onthefly lab compare`)")
    children: dict[str, list] = {}
    for e in r.edges:
        children.setdefault(e.parent, []).append(e.child)
    nodes = {n.id: n for n in r.nodes}

    def show(node_id: str, depth: int) -> None:
        n = nodes[node_id]
        data = ", ".join(f"{k}={json.loads(v)}" for k, v in sorted(n.data.items()) if k in ("region", "region_size",
                                                                                             "replay_fraction"))
        print(f"{'  ' * depth}{n.id}  [{n.kind}, step {n.step}, {n.spent} sample-grads, {n.state_hash[:10]}]"
              + (f"  {data}" if data else ""))
        for child in children.get(node_id, []):
            show(child, depth + 1)

    for n in r.nodes:
        if not n.parents:
            show(n.id, 0)
    for key in r.training:
        print(f"training: {key}")
    return 0


# -- parser ------------------------------------------------------------------------------------------------
def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a positive whole number of sample-gradients, got {text!r}")
    return value


def _allowance_flag(p) -> None:
    p.add_argument("--allowance", type=_positive, metavar="N",
                   help="first set the lab's compute allowance for this run to N sample-gradients in all (spent "
                        "ones count; default: 10x the run's planned sample-gradients, or what the script set)")


def register(lab_subparsers) -> None:
    """Add the part-2 commands to the `onthefly lab` group."""

    def add(name: str, help_text: str, func):
        p = lab_subparsers.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(func=func)
        return p

    p = add("fork", "train a specialist per region (the run waits at a step boundary unless --background)", cmd_fork)
    p.add_argument("regions", nargs="+", metavar="REGION", help="region id(s) of the latest discovery, e.g. r1")
    p.add_argument("--budget", type=int, required=True, help="sample-gradients per specialist")
    p.add_argument("--replay", type=float, help="share of each batch from outside the region (default 0.2)")
    p.add_argument("--patience", type=int, help="stop after this many passes without a lower loss")
    p.add_argument("--background", action="store_true", help="train on a worker thread while the run goes on")
    p.add_argument("--checkpoint", metavar="ID", help="fork from this session checkpoint instead of the weights now")
    p.add_argument("--seed", type=int, default=0)
    _allowance_flag(p)

    p = add("compare", "build every resolution at the same extra compute and compare them per slice", cmd_compare)
    p.add_argument("--extra", type=int, help="sample-gradients per resolution (default: half the run's budget)")
    p.add_argument("--resolutions", nargs="+", choices=MENU, metavar="NAME", help=f"subset of: {', '.join(MENU)}")
    p.add_argument("--latest", action="store_true", help="show the latest comparison instead of building one")
    p.add_argument("--seed", type=int, default=0)
    _allowance_flag(p)

    add("recommend", "the resolution to apply, chosen on the validation split, and why", cmd_recommend)

    p = add("apply", "install a resolution of the latest comparison in the live run", cmd_apply)
    p.add_argument("resolution", metavar="RESOLUTION", choices=MENU)
    p.add_argument("--yes", action="store_true", help="confirm: this changes the live run")

    p = add("lineage", "every model the lab made, as a tree (or --dot for Graphviz)", cmd_lineage)
    p.add_argument("--dot", action="store_true")

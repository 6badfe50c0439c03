"""`onthefly stored list | series`: finished sessions and tracked experiments read from the stores on
disk, no run needed (the dashboard's overlay spawns these to compare a live run with past ones).

    onthefly stored list --json
    onthefly stored series --session 20261207-201500-a1b2c3 --metric loss --buckets 800 --json
    onthefly stored series --experiment me/proj/run/20261207-201500-a1b2 --metric val/loss
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from onthefly.cli import stored_series as ss


def _stores(args) -> list[Path]:
    if args.store:
        return [Path(s).expanduser() for s in args.store]
    from onthefly.sessions.store import default_store_dir

    return [default_store_dir()]


def _tracking_roots(args) -> list[Path]:
    if args.tracking:
        return [Path(s).expanduser() for s in args.tracking]
    return [Path(os.environ.get("ONTHEFLY_DASH_ROOT") or ".dash")]


def cmd_list(args) -> int:
    rows = [row for store in _stores(args) for row in ss.list_sessions(store)]
    rows += [row for root in _tracking_roots(args) for row in ss.list_experiments(root)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print(f"no sessions in {', '.join(map(str, _stores(args)))} and no experiments in "
              f"{', '.join(map(str, _tracking_roots(args)))}")
    for row in rows:
        if row["kind"] == "session":
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started_at"])) if row["started_at"] else "-"
            print(f"session     {row['id']}  {row['project']}/{row['run_name']}  {row['state']}  "
                  f"last step {row['last_step']}  started {when}")
        else:
            print(f"experiment  {row['id']}  {row['state']}")
    return 0


def _session_source(args, ref: str) -> tuple[Path, str]:
    """(store, id) of ``ref``: a session folder's path, or an id in the first --store."""
    path = Path(ref).expanduser()
    if os.sep in ref or path.is_dir():
        return path.resolve().parent.parent, path.resolve().name
    return _stores(args)[0], ref


def cmd_series(args) -> int:
    if not args.sessions and not args.experiments:
        from onthefly.cli.main import CliError

        raise CliError("name what to read: --session ID (or its folder) and/or --experiment PREFIX "
                       "(`onthefly stored list` shows them)")
    metrics = args.metrics or ["loss", "val/loss"]
    sources = []
    for ref in args.sessions or []:
        store, session_id = _session_source(args, ref)
        sources.append(_read("session", session_id, lambda: _session_label(store, session_id),
                             lambda: ss.session_series(store, session_id, metrics, args.buckets)))
    root = _tracking_roots(args)[0]
    for prefix in args.experiments or []:
        sources.append(_read("experiment", prefix, lambda: prefix,
                             lambda: ss.experiment_series(root, prefix, metrics, args.buckets)))
    failed = [s for s in sources if "error" in s]
    for s in failed:
        print(f"onthefly: {s['kind']} {s['id']}: {s['error']}", file=sys.stderr)
    if args.json:
        print(json.dumps({"metrics": metrics, "sources": sources}, allow_nan=False))
    else:
        for s in sources:
            for name, series in s.get("series", {}).items():
                x, y = series["x"], series["y"]
                print(f"{s['kind']} {s['id']}  {name}: {series['points']} points, steps {x[0]}..{x[-1]}, "
                      f"last {y[-1]:.6g} ({len(x)} drawn)" if x else f"{s['kind']} {s['id']}  {name}: no points")
    return 1 if failed else 0


def _read(kind: str, ident: str, label, read) -> dict:
    try:
        series = read()
        return {"kind": kind, "id": ident, "label": label(), "series": {k: v.as_json() for k, v in series.items()}}
    except ss.StoredError as exc:
        return {"kind": kind, "id": ident, "label": ident, "error": str(exc)}
    except OSError as exc:
        return {"kind": kind, "id": ident, "label": ident, "error": f"cannot read it: {exc}"}


def _session_label(store: Path, session_id: str) -> str:
    run = ss._session_info(store / "sessions" / session_id).get("run", {})
    name = f"{run.get('project', '')}/{run.get('run_name', '')}".strip("/")
    return f"{name} ({session_id})" if name else session_id


def _source_options(p) -> None:
    p.add_argument("--store", action="append", metavar="DIR",
                   help="a session store (repeatable; default $ONTHEFLY_STORE or ./.onthefly)")
    p.add_argument("--tracking", action="append", metavar="DIR",
                   help="a local tracking store (repeatable; default $ONTHEFLY_DASH_ROOT or .dash)")


def register(sub) -> None:
    """Add `stored list` and `stored series` to the `onthefly` parser's subparsers."""
    p = sub.add_parser("stored", help="finished sessions and tracked experiments on disk (no run needed)")
    ssub = p.add_subparsers(dest="stored_command", required=True, metavar="ACTION")
    q = ssub.add_parser("list", help="the sessions in the session store and the experiments in the tracking store")
    _source_options(q)
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(func=cmd_list)
    q = ssub.add_parser("series", help="metric series of stored sessions and experiments, downsampled")
    _source_options(q)
    q.add_argument("--session", action="append", dest="sessions", metavar="ID",
                   help="a session id in the (first) --store, or a session's folder (repeatable)")
    q.add_argument("--experiment", action="append", dest="experiments", metavar="PREFIX",
                   help="an experiment prefix in the (first) --tracking store (repeatable)")
    q.add_argument("--metric", action="append", dest="metrics", metavar="NAME",
                   help="a series name: loss, lr, extra/NAME, val/loss, or STREAM/FIELD of an experiment "
                        "(repeatable; default loss and val/loss)")
    q.add_argument("--buckets", type=int, default=1500,
                   help="pixels across the chart: each series keeps each bucket's min and max (default 1500)")
    q.add_argument("--json", action="store_true", help="one JSON object: {metrics, sources: [{kind, id, label, "
                                                       "series: {NAME: {x, y, points}}} or {..., error}]}")
    q.set_defaults(func=cmd_series)

"""`onthefly` subcommands for experiment tracking: serve, token, login, experiments (list, show, export),
push, pull.

``register(subparsers)`` adds them to the main parser; each sets ``func``. Errors print one line on
stderr and exit with status 1.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

DEFAULT_SERVER_ROOT = "~/.local/share/onthefly/tracking-server"


def _server_root(args) -> str:
    return args.root or os.environ.get("ONTHEFLY_SERVER_ROOT") or os.path.expanduser(DEFAULT_SERVER_ROOT)


def _local_root(args) -> str:
    return getattr(args, "root", None) or os.environ.get("ONTHEFLY_DASH_ROOT") or ".dash"


def _guarded(fn):
    @functools.wraps(fn)
    def run(args) -> int:
        from onthefly import _grpc_env  # noqa: F401
        import grpc

        from onthefly.tracking.errors import TrackingError

        try:
            return fn(args) or 0
        except (TrackingError, FileExistsError, FileNotFoundError, ValueError) as exc:
            print(f"onthefly: {exc}", file=sys.stderr)
            return 1
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() else "ERROR"
            print(f"onthefly: {code}: {exc.details()} (is `onthefly serve` running at that address?)",
                  file=sys.stderr)
            return 1

    return run


def _backend(args):
    """The local store (--root, default .dash) or a server (--server, with the stored login)."""
    if getattr(args, "server", None):
        from onthefly.tracking.remote import RemoteBackend

        return RemoteBackend.connect(args.server, os.environ.get("ONTHEFLY_TOKEN"))
    from onthefly.tracking.store import LocalStore

    root = Path(_local_root(args))
    if not root.exists():
        raise FileNotFoundError(f"no local store at {root} (pass --root DIR or --server HOST:PORT)")
    return LocalStore(root)


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


# serve / token / login ---------------------------------------------------------------------------------
@_guarded
def cmd_serve(args) -> int:
    from onthefly.tracking.server.host import start_tracking_server
    from onthefly.tracking.server.tokens import TokenStore

    root = _server_root(args)
    server = start_tracking_server(root, port=args.port, max_upload_bytes=int(args.max_upload_mb * 1e6),
                                   quota_bytes=None if args.quota_mb is None else int(args.quota_mb * 1e6))
    users = sorted({t["user"] for t in TokenStore(root).list()})
    print(f"onthefly: tracking server for {server.store.root} on {server.address}", flush=True)
    if not users:
        print(f"onthefly: no tokens yet: create one with `onthefly token create --user NAME --root {root}`",
              flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(grace=5.0)
    print("onthefly: tracking server stopped", flush=True)
    return 0


@_guarded
def cmd_token_create(args) -> int:
    from onthefly.tracking.server.tokens import TokenStore

    store = TokenStore(_server_root(args))
    token_id, token = store.create(args.user)
    if args.json:
        print(json.dumps({"id": token_id, "user": args.user, "token": token}))
    else:
        print(token)
        print(f"token {token_id} for {args.user} (shown once; only its hash is kept in {store.path})", file=sys.stderr)
    return 0


@_guarded
def cmd_token_list(args) -> int:
    from onthefly.tracking.server.tokens import TokenStore

    for t in TokenStore(_server_root(args)).list():
        print(f"{t['id']}  {t['user']:24} created {_when(t['created_at'])}")
    return 0


@_guarded
def cmd_token_revoke(args) -> int:
    from onthefly.tracking.server.tokens import TokenStore

    if not args.id and not args.user:
        raise ValueError("name the token: --id ID or --user NAME")
    removed = TokenStore(_server_root(args)).revoke(token_id=args.id, user=args.user)
    print(f"revoked {removed} token(s)")
    return 0


@_guarded
def cmd_login(args) -> int:
    from onthefly.tracking import credentials
    from onthefly.tracking.remote import RemoteBackend

    token = args.login_token or os.environ.get("ONTHEFLY_TOKEN")
    if not token:
        token = (getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()).strip()
    if not token:
        raise ValueError("no token given (--token, $ONTHEFLY_TOKEN or standard input)")
    address = credentials.normalize_address(args.server)
    backend = RemoteBackend(address, token)
    try:
        user = backend.whoami()
    finally:
        backend.close()
    path = credentials.save_login(address, user, token)
    print(f"logged in to {address} as {user} (token stored in {path}, mode 0600)")
    return 0


# experiments -------------------------------------------------------------------------------------------
@_guarded
def cmd_experiments_list(args) -> int:
    backend = _backend(args)
    records = backend.list_experiments(args.under or "")
    if args.json:
        for r in records:
            print(json.dumps({"prefix": r.prefix, "status": r.status.value, "error": r.error,
                              "updated_at": r.updated_at, "tags": r.tags, "shared": r.shared,
                              "process_gone": r.process_gone()}))
        return 0
    if not records:
        print("no experiments")
        return 0
    width = max(len(r.prefix) for r in records)
    for r in records:
        status = r.status.value + (" (process gone)" if r.process_gone() else "")
        print(f"{r.prefix:{width}}  {status:24}  {_when(r.updated_at)}")
    return 0


@_guarded
def cmd_experiments_show(args) -> int:
    backend = _backend(args)
    if hasattr(backend, "describe"):
        record, streams, file_count = backend.describe(args.prefix)
    else:
        record = backend.get_experiment(args.prefix)
        streams, file_count = backend.streams(args.prefix), len(backend.list_files(args.prefix))
    gone = record.process_gone()  # known when the writer ran on this host (also for a server's experiment)
    params = backend.get_params(args.prefix)
    if args.json:
        from onthefly.tracking import jsonsafe

        out = record.to_dict()
        out["streams"] = [{"kind": s.kind.value, "name": s.name, "rows": s.rows, "fields": s.fields} for s in streams]
        out["file_count"], out["params"], out["process_gone"] = file_count, params, gone
        print(jsonsafe.dumps(out))
        return 0
    print(record.prefix)
    print(f"  status   {record.describe_status()}")
    print(f"  created  {_when(record.created_at)}   updated {_when(record.updated_at)}")
    if record.tags:
        print(f"  tags     {', '.join(record.tags)}")
    if record.readme:
        print(f"  readme   {record.readme}")
    print(f"  params   {len(params)}   files {file_count}   shared {'yes' if record.shared else 'no'}")
    for s in streams:
        fields = ", ".join(f for f in s.fields if f != "timestamp")
        print(f"  {s.kind.value:6} {s.name}  {s.rows} rows  [{fields}]")
    for h in record.history[-5:]:
        print(f"  history  {_when(h.get('at', 0))}  {h.get('status')}  pid {h.get('pid')}  {h.get('note', '')}")
    return 0


@_guarded
def cmd_export(args) -> int:
    from onthefly.tracking.export import export_table
    from onthefly.tracking.records import LOG_STREAM, StreamKind

    if sum(bool(x) for x in (args.metric, args.track, args.logs)) != 1:
        raise ValueError("export one stream: --metric NAME, --track NAME or --logs")
    kind, name = ((StreamKind.METRIC, args.metric) if args.metric else (StreamKind.TRACK, args.track)
                  if args.track else (StreamKind.LOG, LOG_STREAM))
    backend = _backend(args)
    table, _ = backend.read(args.prefix, kind, name, start_time=args.start_time, end_time=args.end_time)
    path = export_table(table, args.out, args.format, force=args.force)
    print(f"wrote {table.num_rows} rows of {kind.value} {name!r} to {path}")
    return 0


@_guarded
def cmd_push(args) -> int:
    from onthefly.tracking.remote import RemoteBackend
    from onthefly.tracking.store import LocalStore
    from onthefly.tracking.sync import copy_experiment

    local = LocalStore(_local_root(args))
    remote = RemoteBackend.connect(args.server, os.environ.get("ONTHEFLY_TOKEN"))
    report = copy_experiment(local, remote, args.prefix, args.as_prefix)
    _print_report("pushed", report, remote.address)
    return 0


@_guarded
def cmd_pull(args) -> int:
    from onthefly.tracking.remote import RemoteBackend
    from onthefly.tracking.store import LocalStore
    from onthefly.tracking.sync import copy_experiment

    remote = RemoteBackend.connect(args.server, os.environ.get("ONTHEFLY_TOKEN"))
    local = LocalStore(_local_root(args))
    report = copy_experiment(remote, local, args.prefix, args.as_prefix)
    local.close()
    _print_report("pulled", report, str(local.root))
    return 0


def _print_report(verb: str, report, where: str) -> None:
    rows = sum(report.streams.values())
    print(f"{verb} {report.prefix} to {where}: {len(report.streams)} streams ({rows} rows), {report.params} params, "
          f"{report.files_copied} files copied, {report.files_skipped} already there; status {report.status}")


# registration ------------------------------------------------------------------------------------------
def _source_options(p, server_help: str = "read from this tracking server (uses your `onthefly login`)") -> None:
    p.add_argument("--root", help="local store folder (default $ONTHEFLY_DASH_ROOT or .dash)")
    p.add_argument("--server", metavar="HOST:PORT", help=server_help)


def register(subparsers) -> None:
    """Add the tracking subcommands to an argparse subparsers object."""
    p = subparsers.add_parser("serve", help="host a tracking server (TrackingService) on 127.0.0.1")
    p.add_argument("--root", help=f"the server's store folder (default $ONTHEFLY_SERVER_ROOT or {DEFAULT_SERVER_ROOT})")
    p.add_argument("--port", type=int, default=47700, help="port on 127.0.0.1 (default 47700; 0: any free port)")
    p.add_argument("--max-upload-mb", type=float, default=1073.741824,
                   help="largest file one upload may store, in MB (default 1 GiB)")
    p.add_argument("--quota-mb", type=float, default=None, help="most file MB one user may store (default: no quota)")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("token", help="manage the tracking server's per-user API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", help="issue a token for a user (printed once; stored hashed)")
    t.add_argument("--user", required=True, help="user name: the owner segment the user may write under")
    t.add_argument("--root", help="the server's store folder (as given to `onthefly serve`)")
    t.add_argument("--json", action="store_true", help="print {id, user, token} as JSON")
    t.set_defaults(func=cmd_token_create)
    t = tsub.add_parser("list", help="list token ids and users")
    t.add_argument("--root", help="the server's store folder")
    t.set_defaults(func=cmd_token_list)
    t = tsub.add_parser("revoke", help="revoke a token by id, or all tokens of a user")
    t.add_argument("--id", help="token id (see `onthefly token list`)")
    t.add_argument("--user", help="revoke every token of this user")
    t.add_argument("--root", help="the server's store folder")
    t.set_defaults(func=cmd_token_revoke)

    p = subparsers.add_parser("login", help="store your token for a tracking server (file mode 0600)")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="the tracking server's address")
    p.add_argument("--token", dest="login_token", help="the token (default: $ONTHEFLY_TOKEN, else read from stdin)")
    p.set_defaults(func=cmd_login)

    p = subparsers.add_parser("experiments", help="list or show tracked experiments")
    esub = p.add_subparsers(dest="experiments_command", required=True, metavar="ACTION")
    e = esub.add_parser("list", help="list experiments with their status")
    _source_options(e)
    e.add_argument("--under", help="only prefixes at or below this path")
    e.add_argument("--json", action="store_true", help="one JSON object per line")
    e.set_defaults(func=cmd_experiments_list)
    e = esub.add_parser("show", help="status, streams, params and history of one experiment")
    e.add_argument("prefix", help="owner/project/.../name")
    _source_options(e)
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_experiments_show)

    p = esub.add_parser("export", help="export a metric, track or the log to Parquet, CSV or JSON")
    p.add_argument("prefix", help="owner/project/.../name")
    p.add_argument("--metric", help="metric name")
    p.add_argument("--track", help="track name")
    p.add_argument("--logs", action="store_true", help="the experiment's log")
    p.add_argument("--out", required=True, help="output file (.parquet, .csv, .json or .jsonl)")
    p.add_argument("--format", choices=("parquet", "csv", "json", "jsonl"), help="default: from --out's extension")
    p.add_argument("--start-time", type=float, help="only rows with timestamp >= this (seconds)")
    p.add_argument("--end-time", type=float, help="only rows with timestamp <= this (seconds)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    _source_options(p)
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("push", help="copy a local experiment to a tracking server (idempotent)")
    p.add_argument("prefix", help="owner/project/.../name in the local store")
    p.add_argument("--root", help="local store folder (default $ONTHEFLY_DASH_ROOT or .dash)")
    p.add_argument("--server", metavar="HOST:PORT", help="tracking server (default: the one you logged in to)")
    p.add_argument("--as", dest="as_prefix", help="store it under this prefix on the server")
    p.set_defaults(func=cmd_push)

    p = subparsers.add_parser("pull", help="copy an experiment from a tracking server into the local store")
    p.add_argument("prefix", help="owner/project/.../name on the server")
    p.add_argument("--root", help="local store folder (default $ONTHEFLY_DASH_ROOT or .dash)")
    p.add_argument("--server", metavar="HOST:PORT", help="tracking server (default: the one you logged in to)")
    p.add_argument("--as", dest="as_prefix", help="store it under this prefix locally")
    p.set_defaults(func=cmd_pull)

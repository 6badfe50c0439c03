"""`onthefly checkpoint | checkpoints | restore ID | export PATH | import PATH | session | crashed`.

Paths are resolved against your working directory before they are sent, because the trainer reads and
writes them in its own process (on this machine).
"""

from __future__ import annotations

import datetime
import json
import os

from onthefly.v1 import receipt_pb2, sessions_pb2, sessions_pb2_grpc


def _client(args):
    from onthefly.cli.main import _client

    return _client(args)


def _fail(message: str):
    from onthefly.cli.main import CliError

    return CliError(message)


def _stub(client) -> sessions_pb2_grpc.SessionsServiceStub:
    return sessions_pb2_grpc.SessionsServiceStub(client.channel)


def _applied(name: str, receipt: receipt_pb2.Receipt, timeout: float) -> None:
    if receipt.status == receipt_pb2.RECEIPT_STATUS_REJECTED:
        raise _fail(f"{name} rejected: {receipt.reason}")
    if receipt.status != receipt_pb2.RECEIPT_STATUS_APPLIED:
        raise _fail(f"{name} queued as command #{receipt.command_id} but not applied within {timeout:g}s; "
                    "it still runs at the next step boundary (raise --timeout to wait for it)")


def _reason(value: int) -> str:
    return sessions_pb2.CheckpointReason.Name(value).removeprefix("CHECKPOINT_REASON_").lower() if value else "?"


def _when(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M:%S") if unix else "-"


def _checkpoint_line(c: sessions_pb2.Checkpoint) -> str:
    label = f"  '{c.label}'" if c.label else ""
    return (f"{c.checkpoint_id:24} step {c.step:<8} epoch {c.epoch:<4} batch {c.batch_in_epoch:<6} "
            f"{_reason(c.reason):9} {_when(c.created_unix)}  {c.size_bytes / 2**20:.1f} MiB{label}")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def cmd_checkpoint(args) -> int:
    with _client(args) as client:
        response = _stub(client).CreateCheckpoint(sessions_pb2.CreateCheckpointRequest(label=args.label or ""),
                                                  timeout=args.timeout)
    _applied("checkpoint", response.receipt, args.timeout)
    c = response.checkpoint
    print(f"checkpoint {c.checkpoint_id} at step {c.step} (epoch {c.epoch}, batch {c.batch_in_epoch}), "
          f"{_size(c.size_bytes)}")
    return 0


def cmd_checkpoints(args) -> int:
    with _client(args) as client:
        response = _stub(client).ListCheckpoints(sessions_pb2.ListCheckpointsRequest(), timeout=args.timeout)
    if args.json:
        from google.protobuf.json_format import MessageToDict

        for c in response.checkpoints:
            print(json.dumps(MessageToDict(c, preserving_proto_field_name=True)))
        return 0
    if not response.checkpoints:
        print(f"no checkpoints yet (the session keeps the newest {response.keep})")
        return 0
    for c in response.checkpoints:
        print(_checkpoint_line(c))
    return 0


def cmd_restore(args) -> int:
    with _client(args) as client:
        response = _stub(client).RestoreCheckpoint(
            sessions_pb2.RestoreCheckpointRequest(checkpoint_id=args.checkpoint_id), timeout=args.timeout)
    _applied("restore", response.receipt, args.timeout)
    c = response.checkpoint
    print(f"restored {c.checkpoint_id}: continuing from step {c.step} (epoch {c.epoch}, batch {c.batch_in_epoch})")
    return 0


def cmd_export(args) -> int:
    path = os.path.abspath(os.path.expanduser(args.path))
    with _client(args) as client:
        response = _stub(client).ExportSession(sessions_pb2.ExportSessionRequest(path=path, overwrite=args.force),
                                               timeout=args.timeout)
    _applied("export", response.receipt, args.timeout)
    b = response.bundle
    print(f"exported step {b.step} to {b.path} ({_size(b.size_bytes)}, {b.checkpoint_count} checkpoint(s), "
          f"{b.file_count} files)")
    return 0


def cmd_import(args) -> int:
    path = os.path.abspath(os.path.expanduser(args.path))
    if not os.path.exists(path):
        raise _fail(f"{path} does not exist")
    with _client(args) as client:
        response = _stub(client).ImportSession(sessions_pb2.ImportSessionRequest(path=path), timeout=args.timeout)
    _applied("import", response.receipt, args.timeout)
    c = response.checkpoint
    print(f"imported {path}: continuing from step {c.step} (epoch {c.epoch}, batch {c.batch_in_epoch})")
    chain = " -> ".join(e.session_id for e in response.session.lineage)
    if chain:
        print(f"  lineage: {chain}")
    return 0


def cmd_session(args) -> int:
    with _client(args) as client:
        s = _stub(client).GetSession(sessions_pb2.GetSessionRequest(), timeout=args.timeout).session
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(s, preserving_proto_field_name=True)))
        return 0
    print(f"session {s.session_id}  {s.checkpoint_count} checkpoint(s)  {s.metric_steps} steps of metrics  "
          f"{s.sample_loss_rows} per-sample losses  {s.event_count} events")
    print(f"  folder {s.folder}")
    for e in s.lineage:
        origin = sessions_pb2.SessionOrigin.Name(e.origin).removeprefix("SESSION_ORIGIN_").lower() if e.origin else "?"
        source = f" from {e.source} at step {e.from_step}" if e.source else ""
        print(f"  {_when(e.created_unix)}  {e.session_id}  {e.project}/{e.run_name}  {origin}{source}")
    return 0


def cmd_crashed(args) -> int:
    """Sessions of killed runs kept in the store, with their checkpoints (read from the files; no run needed)."""
    from onthefly.sessions.store import Store

    store = Store(args.store)
    found = store.crashed_sessions()
    if not found:
        print(f"no sessions of killed runs in {store.root}")
    for folder in found:
        checkpoints = sorted(p.parent for p in (folder / "checkpoints").glob("*/state.json"))
        print(f"{folder.name}  {len(checkpoints)} checkpoint(s)  {folder}")
        for c in checkpoints:
            print(f"  {c.name}")
    return 0


def register(sub) -> None:
    """Add the session subcommands to the `onthefly` parser's subparsers."""
    p = sub.add_parser("checkpoint", help="take a checkpoint at the next step boundary")
    p.add_argument("--label", help="a label stored with the checkpoint")
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("checkpoints", help="list the checkpoints the session keeps")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_checkpoints)

    p = sub.add_parser("restore", help="go back to one of the session's checkpoints and continue from it")
    p.add_argument("checkpoint_id", metavar="CHECKPOINT_ID", help="an id from `onthefly checkpoints`")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("export", help="export the session (state now, checkpoints, history) to one file")
    p.add_argument("path", metavar="PATH", help="the bundle file to write")
    p.add_argument("--force", action="store_true", help="replace PATH if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="swap an exported session's state into the run and continue from it")
    p.add_argument("path", metavar="PATH", help="a bundle written by `onthefly export`")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("crashed", help="sessions of killed runs the store keeps, with their checkpoints")
    p.add_argument("--store", help="the store directory (default $ONTHEFLY_STORE or ./.onthefly)")
    p.set_defaults(func=cmd_crashed)

    p = sub.add_parser("session", help="the run's session: folder, lineage, history sizes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_session)

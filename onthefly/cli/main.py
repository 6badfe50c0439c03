"""`onthefly` entry point. Errors are one line on stderr and a non-zero exit status."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Callable

from onthefly import _grpc_env  # noqa: F401
import grpc

from onthefly.cli.events_text import event_dict, event_line, state_name
from onthefly.client import RunNotFound, connect
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, receipt_pb2, telemetry_pb2

# Feature modules that add subcommands through register(subparsers); absent ones are skipped.
FEATURE_COMMANDS = ("onthefly.cli.sessions_cmds", "onthefly.cli.health_cmds", "onthefly.cli.tracking_cmds",
                    "onthefly.cli.lab_cmds", "onthefly.cli.ranks_cmds",
                    "onthefly.cli.stored_cmds")


MAX_STEPS = 2**53 - 1  # the step budget the run accepts (steering.RunSteps)


class CliError(Exception):
    """A failure to report as one line."""


def _client(args):
    try:
        return connect(args.run, args.address, args.token)
    except (RunNotFound, ValueError) as exc:
        raise CliError(str(exc)) from None


def _count(value: int, what: str) -> int:
    if not 1 <= value <= MAX_STEPS:
        raise CliError(f"{what} must be between 1 and {MAX_STEPS}, got {value}")
    return value


def _receipt_line(name: str, receipt: receipt_pb2.Receipt) -> str:
    if receipt.status == receipt_pb2.RECEIPT_STATUS_APPLIED:
        return f"{name}: applied at step {receipt.applied_step}"
    if receipt.status == receipt_pb2.RECEIPT_STATUS_REJECTED:
        raise CliError(f"{name} rejected: {receipt.reason}")
    return f"{name}: accepted (queued as command #{receipt.command_id}; not applied yet)"


def cmd_ps(args) -> int:
    runs = live_runs()
    if args.json:
        for r in runs:
            row = {"project": r.project, "run_name": r.run_name, "run_id": r.run_id, "pid": r.pid,
                   "address": r.address, "started_at": r.started_at}
            if args.tokens:
                row["token"] = r.token
            print(json.dumps(row))
        return 0
    if not runs:
        print("no running trainers")
        return 0
    print(f"{'PROJECT/RUN':32} {'PID':>7} {'ADDRESS':21} {'UP':>8}" + ("  TOKEN" if args.tokens else ""))
    for r in runs:
        up = time.time() - r.started_at
        line = f"{r.project + '/' + r.run_name:32} {r.pid:>7} {r.address:21} {up:>7.0f}s"
        print(line + (f"  {r.token}" if args.tokens else ""))
    return 0


def cmd_status(args) -> int:
    with _client(args) as client:
        s = client.control.GetStatus(control_pb2.GetStatusRequest(), timeout=args.timeout).status
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(s, preserving_proto_field_name=True)))
        return 0
    total = f"/{s.total_steps}" if s.total_steps else ""
    print(f"{s.identity.project}/{s.identity.run_name}  {state_name(s.state)}  step {s.step}{total}  "
          f"epoch {s.epoch}  loss {s.last_loss:.5g}  {s.samples_per_second:,.0f} samples/s  device {s.device}")
    for hp in s.hyperparameters:
        values = "  ".join(f"{k}={v:g}" for k, v in sorted(hp.values.items()))
        print(f"  group {hp.group}: {values}")
    if s.error:
        print(f"  error: {s.error}")
    return 0


def _simple(name: str, rpc: str, request_factory: Callable) -> Callable:
    def run(args) -> int:
        with _client(args) as client:
            response = getattr(client.control, rpc)(request_factory(args), timeout=args.timeout)
        print(_receipt_line(name, response.receipt))
        if rpc == "RunTest" and response.HasField("result"):
            r = response.result
            extra = "".join(f"  {k} {v:.4g}" for k, v in sorted(r.metrics.items()))
            print(f"  {r.split} loss {r.loss:.6g} over {r.samples} samples{extra}")
        if rpc == "SetHyperparameters":
            for hp in response.hyperparameters:
                print(f"  group {hp.group}: " + "  ".join(f"{k}={v:g}" for k, v in sorted(hp.values.items())))
        return 0

    return run


def _parse_assignments(pairs: list[str]) -> dict[str, float]:
    values = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise CliError(f"'{pair}' is not KEY=VALUE (e.g. lr=0.01)")
        try:
            values[key] = float(raw)
        except ValueError:
            raise CliError(f"'{raw}' in '{pair}' is not a number") from None
    return values


def cmd_tail(args) -> int:
    request = telemetry_pb2.SubscribeRequest(after_seq=args.after, from_latest=args.follow_only)
    for kind in args.kinds or []:
        name = "EVENT_KIND_" + kind.upper()
        if name not in telemetry_pb2.EventKind.keys():
            raise CliError(f"unknown event kind '{kind}'; choose from "
                           + ", ".join(k.removeprefix('EVENT_KIND_').lower() for k in telemetry_pb2.EventKind.keys()[1:]))
        request.kinds.append(telemetry_pb2.EventKind.Value(name))
    with _client(args) as client:
        for frame in client.telemetry.Subscribe(request):
            if frame.HasField("gap"):
                gap = {"type": "gap", "first_seq": frame.gap.first_seq, "last_seq": frame.gap.last_seq,
                       "reason": frame.gap.reason, "seq": frame.gap.last_seq, "step": None}
                print(json.dumps(gap) if args.json else f"!! missed events {gap['first_seq']}..{gap['last_seq']}: {gap['reason']}")
            for event in frame.events:
                if args.rank is not None and event.rank != args.rank:
                    continue
                print(json.dumps(event_dict(event)) if args.json else event_line(event))
            sys.stdout.flush()
    return 0


def cmd_watch(args) -> int:
    from onthefly.cli.watch import run_watch

    with _client(args) as client:
        s = client.control.GetStatus(control_pb2.GetStatusRequest(), timeout=args.timeout).status
        state = run_watch(client, s.total_steps, f"{s.identity.project}/{s.identity.run_name}")
    print(f"run ended: {state.state}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onthefly", description="Watch and steer running OnTheFly trainers.")
    parser.add_argument("--run", help="run name, project/run, run id, pid or port (needed when several run)")
    parser.add_argument("--address", help="HOST:PORT of a trainer (skips discovery; needs --token)")
    parser.add_argument("--token", help="the run's token (with --address)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a reply (default 60)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ps", help="list running trainers")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--tokens", action="store_true", help="also show each run's token")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("status", help="state, step, loss and hyperparameters of a run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    sub.add_parser("pause", help="pause at the next step boundary (returns once paused)").set_defaults(
        func=_simple("pause", "Pause", lambda a: control_pb2.PauseRequest()))
    sub.add_parser("resume", help="resume a paused run, or end a `step N` early and keep going").set_defaults(
        func=_simple("resume", "Resume", lambda a: control_pb2.ResumeRequest()))
    p = sub.add_parser("stop", help="finish the current step and end fit cleanly")
    p.add_argument("--skip-test", action="store_true", help="skip the end-of-training test pass")
    p.set_defaults(func=_simple("stop", "Stop", lambda a: control_pb2.StopRequest(skip_test=a.skip_test)))
    p = sub.add_parser("step", help="run N steps, then pause")
    p.add_argument("steps", type=int)
    p.set_defaults(func=_simple("step", "Step", lambda a: control_pb2.StepRequest(steps=_count(a.steps, "steps"))))
    p = sub.add_parser("test", help="run the test set now, then keep training")
    p.add_argument("--stay-paused", action="store_true", help="stay paused after the test")
    p.set_defaults(func=_simple("test", "RunTest", lambda a: control_pb2.RunTestRequest(stay_paused=a.stay_paused)))
    p = sub.add_parser("set", help="set optimizer hyperparameters, e.g. `onthefly set lr=0.01 momentum=0.9`")
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--group", type=int, action="append", dest="groups", help="param group index (repeatable)")
    p.set_defaults(func=_simple("set", "SetHyperparameters", lambda a: control_pb2.SetHyperparametersRequest(
        values=_parse_assignments(a.assignments), groups=a.groups or [])))

    p = sub.add_parser("tail", help="print events as they happen")
    p.add_argument("--json", action="store_true", help="one JSON object per line (seq, type, step, ...)")
    p.add_argument("--after", type=int, default=0, help="start after this seq (default: oldest kept)")
    p.add_argument("--follow-only", action="store_true", help="skip history, print only new events")
    p.add_argument("--kind", action="append", dest="kinds", help="only this kind (repeatable), e.g. step_metrics")
    p.add_argument("--rank", type=int, help="only the events of this rank of a distributed run")
    p.set_defaults(func=cmd_tail)

    sub.add_parser("watch", help="live terminal view of a run").set_defaults(func=cmd_watch)

    for module_name in FEATURE_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except CliError as exc:
        print(f"onthefly: {exc}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        code = exc.code().name if exc.code() else "ERROR"
        print(f"onthefly: {code}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""`onthefly lab ...`: find where a running model fails.

    onthefly lab score [--split val]           scoring pass at the next step boundary
    onthefly lab regions [--k 8 --ratio 1.5]   discover error regions (--latest: list the last discovery)
    onthefly lab show r1                       describe one region
    onthefly lab export r1 --format parquet -o r1.parquet
    onthefly lab import hard hard.csv          keep a slice (base indices) under a name
    onthefly lab select NAME --band 0.8 1      make a slice by rule (--class-errors L, --forgotten, --region r1)
    onthefly lab slices | classes | hist | quantiles | top | trajectory INDEX | sample INDEX

Every command takes ``--json`` (one JSON object per line). The server never writes a file: an export
streams the slice's bytes and this command writes the file you name (refusing to replace one unless
``--force``). Part-2 commands (fork, compare, ...) join this group from ``lab_resolution_cmds``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import secrets
from pathlib import Path

from onthefly.v1 import lab_pb2, lab_pb2_grpc, receipt_pb2

SPLITS = {"train": lab_pb2.SAMPLE_SPLIT_TRAIN, "val": lab_pb2.SAMPLE_SPLIT_VAL, "test": lab_pb2.SAMPLE_SPLIT_TEST}
SPLIT_NAMES = {v: k for k, v in SPLITS.items()}
FORMATS = {"parquet": lab_pb2.SLICE_FORMAT_PARQUET, "csv": lab_pb2.SLICE_FORMAT_CSV, "json": lab_pb2.SLICE_FORMAT_JSON}
SCOPES = {"run": lab_pb2.LOSS_SCOPE_RUN, "epoch": lab_pb2.LOSS_SCOPE_EPOCH, "latest": lab_pb2.LOSS_SCOPE_LATEST,
          "eval": lab_pb2.LOSS_SCOPE_EVAL}


def _client(args):
    from onthefly.cli.main import _client

    return _client(args)


def _fail(message: str):
    from onthefly.cli.main import CliError

    return CliError(message)


def _stub(client) -> lab_pb2_grpc.LabServiceStub:
    return lab_pb2_grpc.LabServiceStub(client.channel)


def _print(args, row: dict, text: str) -> None:
    print(json.dumps(row, allow_nan=True) if args.json else text)


def _num(value: float) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4g}"


# -- commands ------------------------------------------------------------------------------------
def cmd_score(args) -> int:
    request = lab_pb2.ScoreRequest(splits=[SPLITS[s] for s in args.splits or ["train"]], layer=args.layer or "",
                                   seed=args.seed)
    with _client(args) as client:
        response = _stub(client).Score(request, timeout=args.timeout)
    receipt = response.receipt
    if receipt.status == receipt_pb2.RECEIPT_STATUS_REJECTED:
        raise _fail(f"scoring rejected: {receipt.reason}")
    if receipt.status != receipt_pb2.RECEIPT_STATUS_APPLIED:
        raise _fail(f"scoring queued as command #{receipt.command_id} but not run before the timeout "
                    f"({args.timeout:g}s); is the run stuck in a long step? try --timeout")
    for s in response.scores:
        row = {"split": SPLIT_NAMES[s.split], "samples": s.samples, "accuracy": s.accuracy, "mean_loss": s.mean_loss,
               "step": s.step, "state_hash": s.state_hash, "layer": s.layer, "seconds": s.seconds,
               "embedding_dims": s.embedding_dims, "inputs_kept": s.inputs_kept}
        _print(args, row, f"{row['split']:5}  {s.samples} samples scored at step {s.step}  accuracy {s.accuracy:.4f}  "
                          f"mean loss {s.mean_loss:.4g}  ({s.seconds:.2f}s, weights {s.state_hash[:12]}, "
                          f"embedding: {s.layer}, {s.embedding_dims} dims)")
    return 0


def _region_row(r) -> dict:
    return {"region": r.region_id, "size": r.size, "mean_loss": r.mean_loss, "loss_ratio": r.loss_ratio,
            "accuracy": r.accuracy, "excess_loss": r.excess_loss, "verdict": r.verdict, "sentence": r.sentence}


def cmd_regions(args) -> int:
    with _client(args) as client:
        stub = _stub(client)
        if args.latest:
            discovery = stub.ListRegions(lab_pb2.ListRegionsRequest(), timeout=args.timeout).discovery
        else:
            request = lab_pb2.DiscoverRegionsRequest(k=args.k, ratio=args.ratio, max_regions=args.max_regions,
                                                     seed=args.seed, embedding_only=args.embedding_only,
                                                     inputs_only=args.inputs_only)
            discovery = stub.DiscoverRegions(request, timeout=args.timeout).discovery
    if args.json:
        for r in discovery.regions:
            print(json.dumps({**_region_row(r), "state_hash": discovery.state_hash, "k": discovery.k,
                              "ratio": discovery.ratio, "seed": discovery.seed, "step": discovery.step}))
        return 0
    print(f"{len(discovery.regions)} region(s) among {discovery.samples} samples (k={discovery.k}, "
          f"ratio {discovery.ratio:g}, seed {discovery.seed}; overall mean loss {discovery.overall_mean_loss:.4g}; "
          f"weights {discovery.state_hash[:12]} at step {discovery.step})")
    for r in discovery.regions:
        print(f"  {r.region_id:4} {r.size:>7} samples  loss {r.mean_loss:.4g} ({r.loss_ratio:.1f}x)  "
              f"accuracy {r.accuracy:.1%}  {r.verdict}")
        if r.sentence:
            print(f"       {r.sentence}")
    if not discovery.regions:
        print("  no cluster reaches the loss ratio; try a lower --ratio or another --k")
    return 0


def cmd_show(args) -> int:
    with _client(args) as client:
        d = _stub(client).GetRegion(lab_pb2.GetRegionRequest(region_id=args.region), timeout=args.timeout).region
    s = d.summary
    row = {**_region_row(s), "split": SPLIT_NAMES.get(d.split, ""), "accuracy_in": d.accuracy_in,
           "accuracy_out": d.accuracy_out, "class_mix": {str(k): v for k, v in sorted(d.class_mix.items())},
           "features": [{"feature": f.feature, "difference": f.difference} for f in d.features],
           "trend": d.trend, "trend_slope": d.trend_slope, "examples": list(d.examples),
           "noise_fraction": d.noise_fraction}
    if args.json:
        print(json.dumps(row, allow_nan=True))
        return 0
    print(s.sentence or s.region_id)
    print(f"  size {s.size}  mean loss {s.mean_loss:.4g} ({s.loss_ratio:.1f}x overall)  accuracy "
          f"{d.accuracy_in:.1%} inside, {d.accuracy_out:.1%} outside")
    print("  classes: " + ", ".join(f"{k}: {v}" for k, v in sorted(d.class_mix.items(), key=lambda kv: -kv[1])))
    if d.features:
        print("  distinguishing inputs: " + ", ".join(f"{f.feature} {f.difference:+.2f} sd" for f in d.features))
    print(f"  trend: {d.trend} (slope {_num(d.trend_slope)} per epoch)")
    print(f"  verdict: {s.verdict}" + ("" if math.isnan(d.noise_fraction) else
                                       f" ({d.noise_fraction:.0%} of members look mislabeled)"))
    print("  examples: " + ", ".join(map(str, d.examples)))
    return 0


def _output_path(args) -> Path:
    path = Path(args.output).expanduser()
    if path.is_dir():
        raise _fail(f"{path} is a folder; name the file to write, e.g. -o {path / ('slice.' + args.format)}")
    if path.exists() and not args.force:
        raise _fail(f"{path} already exists; choose another -o or pass --force to replace it")
    if not path.parent.is_dir():
        raise _fail(f"the folder {path.parent} does not exist")
    return path


def cmd_export(args) -> int:
    path = _output_path(args)
    request = lab_pb2.ExportSliceRequest(name=args.name, format=FORMATS[args.format], columns=args.columns or [])
    # A new file of our own beside the target (never a name a user's file may have), renamed when complete:
    # on failure only that file is removed.
    try:
        fd, partial = _new_file(path.parent, f".{path.name}.", ".partial")
    except OSError as exc:
        raise _fail(f"cannot write in {path.parent}: {exc.strerror}") from None
    rows = size = 0
    try:
        with os.fdopen(fd, "wb") as f, _client(args) as client:
            for i, chunk in enumerate(_stub(client).ExportSlice(request, timeout=args.timeout)):
                if i == 0:
                    rows = chunk.rows
                f.write(chunk.data)
                size += len(chunk.data)
        try:
            os.replace(partial, path)
        except OSError as exc:
            raise _fail(f"cannot write {path}: {exc.strerror}") from None
    finally:
        if partial.exists():
            partial.unlink()
    _print(args, {"name": args.name, "path": str(path), "rows": rows, "bytes": size, "format": args.format},
           f"exported {args.name}: {rows} samples to {path} ({args.format}, {size} bytes)")
    return 0


def _new_file(folder: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """(descriptor, path) of a file this call created (O_EXCL), with the mode open() would give it."""
    while True:
        candidate = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue


def cmd_import(args) -> int:
    path = Path(args.file).expanduser()
    fmt = args.format or path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise _fail(f"cannot tell the format of {path.name}; pass --format parquet|csv|json")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror}") from None
    request = lab_pb2.ImportSliceRequest(name=args.name, format=FORMATS[fmt], data=data,
                                         split=SPLITS[args.split] if args.split else lab_pb2.SAMPLE_SPLIT_UNSPECIFIED)
    with _client(args) as client:
        s = _stub(client).ImportSlice(request, timeout=args.timeout).slice
    _print(args, _slice_row(s), f"imported {s.name}: {s.size} {SPLIT_NAMES.get(s.split, '')} samples ({s.source})")
    return 0


def _slice_row(s) -> dict:
    return {"name": s.name, "split": SPLIT_NAMES.get(s.split, ""), "size": s.size, "source": s.source,
            "examples": list(s.examples)}


def cmd_select(args) -> int:
    request = lab_pb2.SelectRequest(name=args.name, split=SPLITS[args.split])
    rules = [r for r in (args.band, args.class_errors, args.forgotten or None, args.region) if r is not None]
    if len(rules) != 1:
        raise _fail("give exactly one rule: --band LOW HIGH, --class-errors LABEL, --forgotten or --region ID")
    if args.band is not None:
        request.loss_band.CopyFrom(lab_pb2.LossBand(low_quantile=args.band[0], high_quantile=args.band[1]))
    elif args.class_errors is not None:
        request.class_errors.CopyFrom(lab_pb2.ClassErrors(label=args.class_errors))
    elif args.forgotten:
        request.forgotten.CopyFrom(lab_pb2.Forgotten(threshold=args.threshold or 0.0))
    else:
        request.region.CopyFrom(lab_pb2.RegionRule(region_id=args.region))
    with _client(args) as client:
        s = _stub(client).Select(request, timeout=args.timeout).slice
    _print(args, _slice_row(s), f"{s.name}: {s.size} {SPLIT_NAMES.get(s.split, '')} samples ({s.source})")
    return 0


def cmd_classes(args) -> int:
    with _client(args) as client:
        rows = _stub(client).PerClassError(lab_pb2.PerClassErrorRequest(split=SPLITS[args.split]),
                                           timeout=args.timeout).classes
    for r in rows:
        _print(args, {"label": r.label, "samples": r.samples, "errors": r.errors, "error_rate": r.error_rate,
                      "mean_loss": r.mean_loss},
               f"  label {r.label:>4}  {r.errors:>7} / {r.samples:<7} wrong ({r.error_rate:6.1%})  mean loss {r.mean_loss:.4g}")
    return 0


def cmd_slices(args) -> int:
    with _client(args) as client:
        rows = _stub(client).ListSlices(lab_pb2.ListSlicesRequest(), timeout=args.timeout).slices
    for s in rows:
        _print(args, _slice_row(s), f"  {s.name:20} {s.size:>8} {SPLIT_NAMES.get(s.split, ''):5}  {s.source}")
    if not rows and not args.json:
        print("no slices yet (make one with `onthefly lab select` or `onthefly lab import`)")
    return 0


def cmd_hist(args) -> int:
    request = lab_pb2.HistogramRequest(split=SPLITS[args.split], scope=SCOPES[args.scope], bins=args.bins,
                                       log_scale=args.log)
    with _client(args) as client:
        h = _stub(client).Histogram(request, timeout=args.timeout)
    if args.json:
        print(json.dumps({"edges": list(h.edges), "counts": list(h.counts), "total": h.total, "exact": h.exact}))
        return 0
    peak = max(h.counts) if h.counts else 1
    for lo, hi, n in zip(h.edges[:-1], h.edges[1:], h.counts):
        print(f"  [{lo:9.4g}, {hi:9.4g})  {n:>8}  {'#' * round(40 * n / peak) if peak else ''}")
    print(f"  {h.total} losses ({args.split}, {args.scope}{'' if h.exact else ', from a KLL sketch'})")
    return 0


def cmd_quantiles(args) -> int:
    request = lab_pb2.QuantilesRequest(split=SPLITS[args.split], scope=SCOPES[args.scope] if args.scope else 0,
                                       ranks=args.ranks or [])
    with _client(args) as client:
        q = _stub(client).Quantiles(request, timeout=args.timeout)
    row = {"ranks": list(q.ranks), "values": list(q.values), "count": q.count, "min": q.min, "max": q.max,
           "exact": q.exact}
    _print(args, row, "  ".join(f"q{r:g}={v:.4g}" for r, v in zip(q.ranks, q.values))
           + f"  (min {q.min:.4g}, max {q.max:.4g}, {q.count} losses{'' if q.exact else ', KLL sketch'})")
    return 0


def cmd_top(args) -> int:
    request = lab_pb2.TopKRequest(split=SPLITS[args.split], k=args.k, by_mean=args.by_mean, smallest=args.smallest)
    with _client(args) as client:
        t = _stub(client).TopK(request, timeout=args.timeout)
    for i, loss, step in zip(t.indices, t.losses, t.steps):
        _print(args, {"index": i, "loss": loss, "step": step}, f"  {i:>9}  loss {loss:.4g}  (step {step})")
    return 0


def cmd_trajectory(args) -> int:
    request = lab_pb2.SampleTrajectoryRequest(index=args.index, splits=[SPLITS[s] for s in args.splits or []])
    with _client(args) as client:
        t = _stub(client).SampleTrajectory(request, timeout=args.timeout)
    for series in t.series:
        name = SPLIT_NAMES.get(series.split, "")
        if args.json:
            print(json.dumps({"index": t.index, "split": name, "steps": list(series.steps),
                              "epochs": list(series.epochs), "losses": list(series.losses)}))
            continue
        points = "  ".join(f"{s}:{v:.3g}" for s, v in zip(series.steps, series.losses))
        print(f"{name:5} ({len(series.steps)} losses)  {points}")
    return 0


def cmd_sample(args) -> int:
    request = lab_pb2.GetSampleRequest(index=args.index, split=SPLITS[args.split])
    with _client(args) as client:
        r = _stub(client).GetSample(request, timeout=args.timeout)
    label = r.label if r.HasField("label") else None
    if args.json:
        print(json.dumps({"index": r.index, "split": args.split, "shape": list(r.shape), "label": label,
                          "image": r.image, "values": list(r.values)}))
        return 0
    values = list(r.values)
    summary = f"min {min(values):.4g}  max {max(values):.4g}" if values else "empty"
    print(f"{args.split} sample {r.index}: shape {tuple(r.shape)}  label {label}  {summary}"
          + ("  (an image)" if r.image else ""))
    return 0


# -- parser --------------------------------------------------------------------------------------
def _count(text: str) -> int:
    """An argparse type for the unsigned 32-bit counts of the contract (0: the server's default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, got {value}")
    return value


def register(subparsers) -> None:
    """Add `onthefly lab ...` to the CLI's subcommands."""
    lab = subparsers.add_parser("lab", help="find where the model fails: scoring, regions, slices, statistics",
                                description="Find where a running model fails: scoring passes, error regions, "
                                            "slices, and loss statistics computed by the run.")
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="LAB_COMMAND")

    def add(name: str, help_text: str, func):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(func=func)
        return p

    p = add("score", "score every sample with the training model at the next step boundary", cmd_score)
    p.add_argument("--split", action="append", dest="splits", choices=SPLITS, help="split to score (repeatable; default train)")
    p.add_argument("--layer", help="module whose output is the embedding (default: input of the last nn.Linear)")
    p.add_argument("--seed", type=int, default=0)

    p = add("regions", "discover error regions in the latest train scoring pass", cmd_regions)
    p.add_argument("--k", type=_count, default=0, help="k-means clusters (default 8)")
    p.add_argument("--ratio", type=float, default=0.0, help="minimum mean loss over the overall mean (default: the server's, 1.5)")
    p.add_argument("--max-regions", type=_count, default=0, help="regions kept at most (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--embedding-only", action="store_true", help="cluster the embedding alone")
    p.add_argument("--inputs-only", action="store_true", help="cluster the inputs alone")
    p.add_argument("--latest", action="store_true", help="list the latest discovery instead of discovering again")

    p = add("show", "describe one region of the latest discovery", cmd_show)
    p.add_argument("region", metavar="REGION", help="region id, e.g. r1")

    p = add("export", "write a region or slice to a Parquet, CSV or JSON file", cmd_export)
    p.add_argument("name", metavar="REGION", help="region id or slice name")
    p.add_argument("--format", choices=FORMATS, default="parquet")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write (here, by this command)")
    p.add_argument("--columns", nargs="+", metavar="COLUMN",
                   help="label prediction correct loss margin region loss_history (default: label prediction loss "
                        "margin region)")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")

    p = add("import", "keep the base indices of a Parquet, CSV or JSON slice file under a name", cmd_import)
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=FORMATS, help="default: from the file's extension")
    p.add_argument("--split", choices=SPLITS, help="default: the file's split column, else train")

    p = add("select", "make a named slice by rule", cmd_select)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--band", nargs=2, type=float, metavar=("LOW", "HIGH"), help="scored-loss quantile band")
    p.add_argument("--class-errors", type=int, metavar="LABEL", help="misclassified samples of LABEL")
    p.add_argument("--forgotten", action="store_true", help="train samples learned and later lost")
    p.add_argument("--threshold", type=float, help="with --forgotten: loss under which a sample counts as learned")
    p.add_argument("--region", metavar="ID", help="members of a region")

    add("slices", "the named slices this run's lab keeps", cmd_slices)

    p = add("classes", "per-class error of the latest scoring pass, worst first", cmd_classes)
    p.add_argument("--split", choices=SPLITS, default="train")

    p = add("hist", "histogram of per-sample losses, computed on the server", cmd_hist)
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--scope", choices=SCOPES, default="latest")
    p.add_argument("--bins", type=_count, default=20)
    p.add_argument("--log", action="store_true", help="geometric bins")

    p = add("quantiles", "loss quantiles (KLL sketch over the run/epoch/evaluation, or exact latest)", cmd_quantiles)
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--scope", choices=SCOPES)
    p.add_argument("--ranks", nargs="+", type=float, metavar="Q")

    p = add("top", "the highest-loss samples, one row per sample", cmd_top)
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("-k", type=_count, default=20)
    p.add_argument("--by-mean", action="store_true", help="rank by mean loss over the run, not the latest")
    p.add_argument("--smallest", action="store_true", help="the lowest-loss samples instead")

    p = add("trajectory", "every recorded loss of one sample", cmd_trajectory)
    p.add_argument("index", type=int, metavar="INDEX", help="base-dataset index")
    p.add_argument("--split", action="append", dest="splits", choices=SPLITS)

    p = add("sample", "one sample's input and label (read at a step boundary)", cmd_sample)
    p.add_argument("index", type=int, metavar="INDEX", help="base-dataset index")
    p.add_argument("--split", choices=SPLITS, default="train")

    try:
        resolutions = importlib.import_module("onthefly.cli.lab_resolution_cmds")
    except ModuleNotFoundError as exc:
        if exc.name != "onthefly.cli.lab_resolution_cmds":
            raise
    else:
        resolutions.register(sub)

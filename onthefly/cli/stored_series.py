"""Read finished runs from the stores on disk, with no run serving: the sessions a session store keeps
and the experiments a local tracking store holds, as metric series downsampled to a chart's pixels.

The dashboard's overlay spawns ``onthefly stored ...`` (see stored_cmds) to compare a live run with
these; nothing here writes to either store.

Series names are the live run's (its HistoryService): ``loss``, ``lr``, ``grad_norm``,
``samples_per_second``, ``step_seconds``, ``data_seconds``, ``extra/NAME`` for the loop's extra values
and ``SPLIT/NAME`` (``val/loss``, ``test/acc``) for evaluations. A tracked experiment stores metric
streams of fields; ``Trainer(track=True)`` writes the step metrics into stream ``train`` and
evaluations into ``val``/``test``, so ``loss`` and ``extra/NAME`` read stream ``train`` (else the
unnamed stream, for experiments logged by hand) and ``STREAM/FIELD`` reads that stream's field. The
x axis is the rows' ``step`` field, else their row number from 1.
"""

from __future__ import annotations

import bisect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from onthefly.sessions.downsample import min_max

SESSION_FILE = "session.json"
STEP_FIELDS = ("loss", "lr", "grad_norm", "samples_per_second", "step_seconds", "data_seconds")
MAX_BUCKETS = 100_000


class StoredError(Exception):
    """A stored run that cannot be read, with why (shown to the person as is)."""


@dataclass
class Series:
    steps: np.ndarray
    values: np.ndarray
    points: int  # finite points before downsampling

    def as_json(self) -> dict:
        return {"x": [int(s) for s in self.steps], "y": [float(v) for v in self.values], "points": self.points}


# -- listing ---------------------------------------------------------------------------------------------
def list_sessions(store: Path) -> list[dict]:
    """Every session folder in ``store`` (oldest first): id, project, run name, run id, state
    (running / finished / failed / killed) and the last step its history recorded."""
    from onthefly.sessions.store import LOCK, Store, _try_lock, read_manifest

    out = []
    for folder in Store(store).session_folders():
        manifest = read_manifest(folder)
        if manifest is None or manifest.get("session_id") != folder.name:
            continue
        info = _session_info(folder)
        lock = folder / LOCK
        fd = _try_lock(lock) if lock.exists() else -1  # never create a lock file in another's folder
        if fd is None:  # its process holds the lock: the run is live
            state = "running"
        else:
            if fd >= 0:
                os.close(fd)
            state = {"ok": "finished", "error": "failed"}.get(manifest.get("ended"), "killed")
        run = info.get("run", {})
        out.append({"kind": "session", "id": folder.name, "store": str(Path(store).resolve()), "state": state,
                    "project": run.get("project", ""), "run_name": run.get("run_name", ""),
                    "run_id": run.get("run_id", ""), "started_at": _mtime(folder / LOCK),
                    "last_step": _last_step(_event_chunks(folder))})
    return out


def list_experiments(root: Path) -> list[dict]:
    """Every experiment in the local tracking store at ``root``: prefix, status, run id, when updated."""
    from onthefly.tracking.store import LocalStore

    if not Path(root).is_dir():
        return []
    out = []
    for r in LocalStore(root).list_experiments():
        out.append({"kind": "experiment", "id": r.prefix, "root": str(Path(root).resolve()),
                    "state": r.status.value.lower(),
                    "run_id": (r.metadata or {}).get("onthefly_run_id", ""), "updated_at": r.updated_at,
                    "process_gone": r.process_gone()})
    return out


# -- a session's series ----------------------------------------------------------------------------------
def session_series(store: Path, session_id: str, names: Iterable[str], buckets: int) -> dict[str, Series]:
    """The series ``names`` of the session ``session_id`` in ``store``, from its history's events."""
    _check_buckets(buckets)
    if not session_id or "/" in session_id or "\\" in session_id or session_id in (".", ".."):
        raise StoredError(f"'{session_id}' is not a session id (a folder name under {store}/sessions)")
    folder = Path(store) / "sessions" / session_id
    if not (folder / "manifest.json").is_file():
        raise StoredError(f"no session {session_id} in {Path(store).resolve()} (a later run of that store cleans "
                          f"finished sessions; `onthefly stored list` shows what is there)")
    names = list(dict.fromkeys(names))
    chunks = _event_chunks(folder)
    # The step columns and evaluation losses (what the overlay asks for) have a columnar fast path;
    # extras and other evaluation metrics are nested objects, read line by line.
    simple = all(n in STEP_FIELDS or n.endswith("/loss") and not n.startswith("extra/") for n in names)
    replayed = _replay_columnar(chunks) if simple else None
    steps, columns, extras, evals = replayed if replayed is not None else _replay(chunks)
    out = {}
    for name in names:
        if name in STEP_FIELDS:
            xs, ys = steps, columns[name]
        elif name.startswith("extra/") and name[6:] in extras:
            xs, ys = extras[name[6:]]
        elif name in evals:
            xs, ys = evals[name]
        else:
            continue
        xs, ys = np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.float64)
        order = np.argsort(xs, kind="stable")  # an evaluation right after a restore can come out of order
        out[name] = _downsample(xs[order], ys[order], buckets)
    return out


def _event_chunks(folder: Path) -> list[Path]:
    return sorted((folder / "history" / folder.name).glob("events-*.jsonl"))


def _replay(chunks: list[Path]):
    """The metric history as the run kept it: step metrics and evaluations in order; a step at or before
    one already seen means the run went back to a checkpoint, so what came after that step is dropped
    (the run's own history was replaced by the checkpoint's the same way)."""
    steps: list[int] = []
    columns: dict[str, list[float]] = {f: [] for f in STEP_FIELDS}
    extras: dict[str, tuple[list[int], list[float]]] = {}
    evals: dict[str, tuple[list[int], list[float]]] = {}
    for chunk in chunks:
        for line in chunk.read_text().splitlines():
            # Cheap filter first: most lines are other kinds (logs, runtime stats, lifecycle).
            if '"step_metrics"' not in line and '"eval_result"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            step = event.get("step")
            if not isinstance(step, int):
                continue
            if event.get("kind") == "step_metrics":
                if steps and step <= steps[-1]:
                    _truncate(step, steps, columns, extras, evals)
                steps.append(step)
                for f in STEP_FIELDS:
                    columns[f].append(_number(event.get(f)))
                for key, value in (event.get("extra") or {}).items():
                    xs, ys = extras.setdefault(key, ([], []))
                    xs.append(step)
                    ys.append(_number(value))
            elif event.get("kind") == "eval_result":
                split = event.get("split") or "val"
                for key, value in [("loss", event.get("loss")), *(event.get("metrics") or {}).items()]:
                    xs, ys = evals.setdefault(f"{split}/{key}", ([], []))
                    xs.append(step)
                    ys.append(_number(value))
    return steps, columns, extras, evals


def _replay_columnar(chunks: list[Path]):
    """``_replay`` for the step columns and evaluation losses, parsed by pyarrow's JSON reader (about 5x
    faster than line by line: a 10^6-step session reads in seconds); None when a chunk does not parse
    that way (the caller reads it line by line)."""
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([("kind", pa.string()), ("step", pa.int64()), ("split", pa.string()),
                        *[(f, pa.float64()) for f in STEP_FIELDS]])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    tables = []
    try:
        for chunk in chunks:
            tables.append(_metrics_columns(chunk, schema) or pj.read_json(str(chunk), parse_options=options))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if not tables:
        return [], {f: [] for f in STEP_FIELDS}, {}, {}
    import pyarrow.compute as pc

    table = pa.concat_tables(tables)
    kind = table.column("kind")
    step = table.column("step").fill_null(-1).to_numpy()
    # Compared in Arrow: a numpy array of a million Python strings costs more than the parse.
    is_step = pc.fill_null(pc.equal(kind, "step_metrics"), False).to_numpy(zero_copy_only=False)
    is_eval = pc.fill_null(pc.equal(kind, "eval_result"), False).to_numpy(zero_copy_only=False) & (step >= 0)
    # A row survives unless a later step-metrics row has a step at or before its own (the run went back
    # to a checkpoint there): the same rule as _replay's truncation, for every row at once.
    big = np.iinfo(np.int64).max
    later = np.minimum.accumulate(np.where(is_step, step, big)[::-1])[::-1]
    keep = np.r_[later[1:], big] > step
    rows = is_step & keep & (step >= 0)
    columns = {f: table.column(f).fill_null(float("nan")).to_numpy()[rows] for f in STEP_FIELDS}
    evals = {}
    where = np.flatnonzero(is_eval)  # few rows: their splits as Python strings are cheap
    split = np.full(len(step), "", dtype=object)
    split[where] = [s or "val" for s in table.column("split").take(pa.array(where)).to_pylist()]
    loss = table.column("loss").fill_null(float("nan")).to_numpy()
    for name in sorted(set(split[where])):
        sel = is_eval & keep & (split == name)
        evals[f"{name}/loss"] = (step[sel], loss[sel])
    return step[rows], columns, {}, evals


def _metrics_columns(chunk: Path, schema):
    """The chunk's ``metrics-N.feather`` (its step metrics and evaluations as columns, written beside the
    events file), or None when there is none or it does not read (then the events file is parsed)."""
    import pyarrow as pa

    path = chunk.with_name(chunk.name.replace("events-", "metrics-", 1)).with_suffix(".feather")
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        return table.select(schema.names).cast(schema)
    except (OSError, pa.ArrowInvalid, pa.ArrowTypeError, KeyError):
        return None


def _truncate(step, steps, columns, extras, evals) -> None:
    keep = bisect.bisect_left(steps, step)
    del steps[keep:]
    for values in columns.values():
        del values[keep:]
    for xs, ys in [*extras.values(), *evals.values()]:
        cut = bisect.bisect_left(xs, step)
        del xs[cut:], ys[cut:]


def _last_step(chunks: list[Path]) -> int:
    for chunk in reversed(chunks):
        try:
            lines = chunk.read_text().splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            if '"step_metrics"' in line:
                try:
                    return int(json.loads(line)["step"])
                except (ValueError, KeyError, TypeError):
                    continue
    return 0


# -- a tracked experiment's series -----------------------------------------------------------------------
def experiment_series(root: Path, prefix: str, names: Iterable[str], buckets: int) -> dict[str, Series]:
    """The series ``names`` of the tracked experiment ``prefix`` in the local store at ``root``."""
    from onthefly.tracking.errors import TrackingError
    from onthefly.tracking.records import StreamKind
    from onthefly.tracking.store import LocalStore

    _check_buckets(buckets)
    if not Path(root).is_dir():
        raise StoredError(f"no tracking store at {Path(root).resolve()}")
    store = LocalStore(root)
    try:
        store.get_experiment(prefix)
        streams = {s.name for s in store.streams(prefix, StreamKind.METRIC)}
    except TrackingError as exc:
        raise StoredError(str(exc)) from None
    tables: dict[str, object] = {}
    out = {}
    for name in dict.fromkeys(names):
        found = _stream_field(name, streams)
        if found is None:
            continue
        stream, field = found
        if stream not in tables:
            tables[stream] = store.read(prefix, StreamKind.METRIC, stream)[0]
        table = tables[stream]
        if field not in table.column_names:
            continue
        values = _float_column(table, field)
        if "step" in table.column_names:
            steps = _float_column(table, "step")
        else:
            steps = np.arange(1, len(values) + 1, dtype=np.float64)
        keep = np.isfinite(steps) & np.isfinite(values)
        xs, ys = steps[keep].astype(np.int64), values[keep]
        order = np.argsort(xs, kind="stable")
        out[name] = _downsample(xs[order], ys[order], buckets)
    return out


def _stream_field(name: str, streams: set[str]) -> tuple[str, str] | None:
    """Which stream and field hold series ``name`` (see the module docstring)."""
    stream, sep, field = name.partition("/")
    if not sep:
        stream, field = "", name
    elif stream == "extra":
        stream = ""
    if stream:
        return (stream, field) if stream in streams else None
    for candidate in ("train", "None"):  # Trainer(track=True)'s stream, then the unnamed one
        if candidate in streams:
            return candidate, field
    return None


def _float_column(table, field: str) -> np.ndarray:
    import pyarrow as pa

    column = table.column(field)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        return np.full(len(column), np.nan)
    return column.cast(pa.float64()).to_numpy(zero_copy_only=False)


# -- shared ----------------------------------------------------------------------------------------------
def _check_buckets(buckets: int) -> None:
    if not 1 <= buckets <= MAX_BUCKETS:
        raise StoredError(f"buckets must be between 1 and {MAX_BUCKETS} (about the chart's width in pixels), "
                          f"got {buckets}")


def _downsample(steps: np.ndarray, values: np.ndarray, buckets: int) -> Series:
    points = int(np.isfinite(values).sum())
    xs, ys = min_max(steps, values, buckets) if len(steps) else (steps, values)
    return Series(xs, ys, points)


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _session_info(folder: Path) -> dict:
    try:
        body = json.loads((folder / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0

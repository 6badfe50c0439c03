"""``Experiment``: one tracked run, in a local store folder or on an ``onthefly serve`` server.

    with Experiment(prefix="vision-team/resnet/run-1", dash_root=".dash").run as exp:
        exp.params.set(lr=1e-3, model={"depth": 4})
        exp.metrics("train").log(loss=0.4, epoch=3)

Lifecycle: ``run.start()`` records RUNNING; leaving ``with exp.run`` records COMPLETED, FAILED (an
exception, whose text is kept) or CANCELLED (KeyboardInterrupt). An experiment still running at
interpreter exit is flushed and closed then (FAILED if the program died of an uncaught exception). After
``kill -9`` nothing runs, but everything flushed before is readable and the status says the process is
gone. As in ML-Dash, using ``exp.params``/``metrics``/``tracks``/``logs``/``files`` or ``log()`` before
``start()`` raises :class:`NotRunning` (a RuntimeError), and ``complete()``/``flush()`` then do nothing;
writing after closing raises NotRunning too, while reading still works.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from time import time as _time
from typing import Any, Callable

from onthefly.tracking import names, runinfo, values
from onthefly.tracking.config import WriterConfig
from onthefly.tracking import lifecycle
from onthefly.tracking.errors import InvalidArgument, NotRunning, StorageFailed, TrackingError
from onthefly.tracking.files import FilesAccessor, remove_staging
from onthefly.tracking.inflight import wait_for_loggers
from onthefly.tracking.logs import LEVELS, LOG_SINK, LogBuilder, check_level, echo
from onthefly.tracking.hotpath import log_rows
from onthefly.tracking.metrics import Metrics
from onthefly.tracking.params import ParamsBuilder
from onthefly.tracking.records import ExperimentRecord, OpenSpec, Status
from onthefly.tracking.tracks import TrackBuilder, Tracks
from onthefly.tracking.writer import Refusing, Writer

DEFAULT_ROOT = ".dash"
_LEVEL_SET = frozenset(LEVELS)
_LIVE: set = set()  # running experiments of this process, closed at exit
_LIVE_LOCK = threading.Lock()


def _echo_default() -> bool:
    """Log lines are printed as ML-Dash does unless $ONTHEFLY_ECHO is 0/false/no/off."""
    return os.environ.get("ONTHEFLY_ECHO", "1").strip().lower() not in ("0", "false", "no", "off")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RunManager:
    """``exp.run``: ``start()``, ``complete()``, ``fail()``, ``cancel()``, a context manager and a decorator."""

    def __init__(self, exp: "Experiment") -> None:
        self._exp = exp
        self.id: int | None = None  # a snowflake id, made when a prefix uses {EXP.id}
        self.now = runinfo.RUN.now

    # ML-Dash's RUN attributes of this experiment ---------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self._exp.prefix

    @prefix.setter
    def prefix(self, value: str) -> None:
        """Rename the experiment before it is started; ``{EXP.name}``, ``{EXP.id}``, ``{EXP.date}`` ... are
        expanded (see ``onthefly.tracking.runinfo``). Raises RuntimeError once it is started."""
        exp = self._exp
        if exp._state != "new":
            raise NotRunning(f"cannot change the prefix of {exp.prefix!r}: it has been started; set "
                             f"exp.run.prefix before exp.run.start() or `with exp.run:`")
        exp.prefix = names.resolve_prefix(self.expand(value), None, exp.owner)
        exp._names = {}

    def expand(self, template: str) -> str:
        """A prefix template with ``{EXP.attr}`` and RUN's fields expanded."""
        return runinfo.expand_fields(runinfo.expand_exp(template, self._attr))

    def _attr(self, name: str):
        if name == "id" and self.id is None:
            self.id = runinfo.snowflake_id()
        if name in ("date", "datetime_str"):
            return self.now.strftime("%Y%m%d" if name == "date" else "%Y%m%d.%H%M%S")
        if name in ("owner", "project", "name", "prefix", "id", "now"):
            return getattr(self, name)
        value = getattr(runinfo.RUN, name, None)
        if value is None or name.startswith("_"):
            raise InvalidArgument(f"prefix template: EXP.{name} is not known (use name, id, date, datetime_str, "
                                  f"owner, project or a RUN attribute)")
        return value

    @property
    def date(self) -> str:
        return self.now.strftime("%Y%m%d")

    @property
    def datetime_str(self) -> str:
        return self.now.strftime("%Y%m%d.%H%M%S")

    @property
    def owner(self) -> str:
        return self._exp.owner

    @owner.setter
    def owner(self, value: str) -> None:
        self._exp.owner = value

    @property
    def project(self) -> str:
        return self._exp.project

    @project.setter
    def project(self, value: str) -> None:
        self._exp.project = value

    @property
    def name(self) -> str:
        return self._exp.name

    @name.setter
    def name(self, value: str) -> None:
        self._exp.name = value

    @property
    def _folder_path(self) -> str:
        return self._exp.prefix

    def start(self) -> "Experiment":
        """Open (create or update) the experiment and record RUNNING. Idempotent while running."""
        return self._exp._start()

    def complete(self) -> None:
        """Flush everything and record COMPLETED."""
        self._exp._close(Status.COMPLETED)

    def fail(self, error: BaseException | str | None = None) -> None:
        """Flush everything and record FAILED (with the error's text)."""
        text = _describe(error) if isinstance(error, BaseException) else (error or "")
        self._exp._close(Status.FAILED, text)

    def cancel(self, reason: str = "") -> None:
        """Flush everything and record CANCELLED."""
        self._exp._close(Status.CANCELLED, reason)

    @property
    def status(self) -> Status | None:
        record = self._exp.record
        return record.status if record is not None else None

    def __enter__(self) -> "Experiment":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (None, 0)):
            status, error = Status.COMPLETED, ""
        elif isinstance(exc, KeyboardInterrupt):
            status, error = Status.CANCELLED, "KeyboardInterrupt"
        else:
            status, error = Status.FAILED, _describe(exc)
        if exc is None:
            self._exp._close(status, error)
            return False
        try:
            self._exp._close(status, error)
        except Exception as cleanup:  # noqa: BLE001 - never replace the body's exception
            if hasattr(exc, "add_note"):
                exc.add_note(f"onthefly.tracking: closing the experiment also failed: {_describe(cleanup)}")
            warnings.warn(f"onthefly.tracking: closing the experiment failed: {_describe(cleanup)}", RuntimeWarning)
        return False

    def __call__(self, fn: Callable) -> Callable:
        """Decorator: run ``fn(exp, ...)`` inside ``with exp.run``."""
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self as exp:
                return fn(exp, *args, **kwargs)

        return wrapper


class _Builder:
    """``exp.params``, ``exp.metrics``, ...: as in ML-Dash, using one before the experiment was started
    raises RuntimeError (after closing they still read). A non-data descriptor: ``_start`` puts the builders
    in the instance's dict, so that once started ``exp.metrics`` is a plain attribute lookup (the metric
    hot path pays nothing for the check)."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, exp, owner=None):
        if exp is None:
            return self
        if exp._state == "new":
            raise NotRunning(f"exp.{self.name}: " + exp._not_started_text())
        return getattr(exp, "_" + self.name)


class Experiment:
    """A tracked experiment. See the module docstring; ML-Dash's calls work with the same shapes.

    Args:
        prefix: "owner/project/.../name"; with fewer than three segments the owner (your user name, or the
            user you logged in as on the server) is put in front. Also read from $ONTHEFLY_PREFIX.
        project: put between owner and ``prefix`` (ML-Dash's local style).
        readme / description: free text. tags: labels. metadata: free JSON-like dict. shared: let other
            users of a server read it.
        dash_root: local store folder (default $ONTHEFLY_DASH_ROOT or ".dash"); ignored with ``dash_url``.
        dash_url: "host:port" of an ``onthefly serve`` server (True: the server you last logged in to);
            the token comes from ``token=``, $ONTHEFLY_TOKEN or ``onthefly login``.
        flush_interval, batch_size, max_pending, on_full, upload_workers, durable, buffered: writer
            settings (see ``onthefly.tracking.config``); environment variables apply when not given.
        bindrs: collections the experiment belongs to (ML-Dash's name; kept on the object).
        echo: print each log line as ``[LEVEL] message [k=v]`` (stderr for error/fatal), as ML-Dash does;
            default on unless $ONTHEFLY_ECHO is 0. local_path: ML-Dash's deprecated name of dash_root.
        With no prefix (and no project), the prefix is $ML_DASH_PREFIX / $ONTHEFLY_PREFIX, else ``RUN.prefix``
        expanded (see ``onthefly.tracking.runinfo``); a prefix may use ``{EXP.name}``-style templates.
    """

    def __init__(self, prefix: str | None = None, *, project: str | None = None, owner: str | None = None,
                 readme: str | None = None, description: str | None = None, tags: list[str] | None = None,
                 metadata: dict[str, Any] | None = None, bindrs: list[str] | None = None, shared: bool = False,
                 dash_root: str | os.PathLike | None = None,
                 dash_url: str | bool | None = None, token: str | None = None, echo: bool | None = None,
                 flush_interval: float | None = None, batch_size: int | None = None, max_pending: int | None = None,
                 on_full: str | None = None, upload_workers: int | None = None, durable: bool | None = None,
                 buffered: bool | None = None, backend: Any = None, local_path: str | os.PathLike | None = None) -> None:
        if local_path is not None:  # ML-Dash's old name
            warnings.warn("Experiment(local_path=...) is deprecated: use dash_root=", DeprecationWarning, stacklevel=2)
            dash_root = local_path if dash_root is None else dash_root
        self._config = WriterConfig.resolve(flush_interval=flush_interval, batch_size=batch_size,
                                            max_pending=max_pending, on_full=on_full, upload_workers=upload_workers,
                                            durable=durable, buffered=buffered)
        self._dash_url, self._token = dash_url, token
        self._dash_root = dash_root
        self._backend = backend
        self.run = RunManager(self)
        self._names: dict[str, str] = {}  # owner/project/name set by hand (ML-Dash's setters)
        if prefix is None and project is None and not dash_url:
            prefix = runinfo.default_prefix()
        elif isinstance(prefix, str) and "{" in prefix:
            prefix = self.run.expand(prefix)
        if owner is None and dash_url and backend is None:
            owner = self._server_user(prefix, project)
        self.prefix = names.resolve_prefix(prefix, project, owner)
        # None when not given, as ML-Dash shows them (the stored record keeps "", [] and {})
        self.readme = readme if readme is not None else description
        self.tags = list(tags) if tags is not None else None
        self.metadata = dict(metadata) if metadata is not None else None
        self._bindrs_list = list(bindrs or [])
        self.shared = bool(shared)
        self._echo = _echo_default() if echo is None else bool(echo)
        self.record: ExperimentRecord | None = None
        self._state = "new"
        self._started_at = 0.0
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._writer: Writer | None = None
        self._queue_for_builders: Any = Refusing(self._not_started_text())
        self._builders: list = []
        self._uploads: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending_uploads: set[concurrent.futures.Future] = set()
        self._upload_errors: list[str] = []
        self._upload_lock = threading.Lock()
        self._staging: Path | None = None
        self._params = ParamsBuilder(self)
        self._metrics = Metrics(self)
        self._tracks = Tracks(self)
        self._logs = LogBuilder(self)
        self._files = FilesAccessor(self)

    params = _Builder()
    metrics = _Builder()
    tracks = _Builder()
    logs = _Builder()
    files = _Builder()

    def bindrs(self, name: str):
        """The files bound to the collection ``name``: ``exp.bindrs("best").list()``."""
        from onthefly.tracking.files import BindrsBuilder

        return BindrsBuilder(self, name)

    def __repr__(self) -> str:
        return f"Experiment({self.prefix!r}, {self._state})"

    def _server_user(self, prefix: str | None, project: str | None) -> str | None:
        """The owner for a prefix written without one: the user of the stored login, or (with a token but no
        login for that server) the server's answer to WhoAmI, so the owner is never guessed from $USER."""
        from onthefly.tracking.credentials import user_for

        user = user_for(None if self._dash_url is True else str(self._dash_url))
        text = prefix if prefix is not None else os.environ.get("ONTHEFLY_PREFIX") or ""
        if user is None and (project or len(str(text).strip("/").split("/")) < 3):
            self._backend = self._make_backend()
            user = self._backend.whoami()
        return user

    # names ---------------------------------------------------------------------------------------------
    @property
    def id(self) -> None:
        """None locally, as in ML-Dash (whose id is the server's, set by a remote open); use ``prefix``."""
        return None

    @property
    def owner(self) -> str:
        return self._names.get("owner") or self.prefix.split("/")[0]

    @owner.setter
    def owner(self, value: str) -> None:
        self._names["owner"] = value

    @property
    def project(self) -> str:
        return self._names.get("project") or self.prefix.split("/")[1]

    @project.setter
    def project(self, value: str) -> None:
        self._names["project"] = value

    @property
    def name(self) -> str:
        return self._names.get("name") or self.prefix.rsplit("/", 1)[-1]

    @name.setter
    def name(self, value: str) -> None:
        """A display name; the stored experiment stays at its prefix (as in ML-Dash)."""
        self._names["name"] = value

    @property
    def status(self) -> Status | None:
        return None if self.record is None else self.record.status

    @property
    def _storage(self):
        """ML-Dash's private ``_storage`` (its examples print ``_storage.root_path``): the local store
        folder, or None for a server."""
        if self._dash_url:
            return None
        import types

        return types.SimpleNamespace(root_path=Path(self._dash_root or os.environ.get("ONTHEFLY_DASH_ROOT")
                                                    or DEFAULT_ROOT))

    @property
    def mode(self):
        """OperationMode.LOCAL (a store folder) or OperationMode.REMOTE (an ``onthefly serve`` server)."""
        from onthefly.tracking.compat import OperationMode

        return OperationMode.REMOTE if self._dash_url else OperationMode.LOCAL

    @property
    def is_running(self) -> bool:
        return self._state == "running"

    # logging (hot path) --------------------------------------------------------------------------------
    def log(self, message: Any = None, level: str | None = None, metadata: dict | None = None,
            **extra) -> LogBuilder | None:
        """Record a log line with a level (debug/info/warn/error/fatal, default info) and metadata."""
        q = self._queue_for_builders
        if q.tally.due(len(q)):
            q.kick()
        if message is None:  # ML-Dash's old builder style
            warnings.warn("exp.log() without a message is deprecated: use exp.logs.info('message')",
                          DeprecationWarning, stacklevel=2)
            return self._logs
        if level is None:
            level = "info"
        elif level not in _LEVEL_SET:
            level = check_level(level)
        if extra:
            metadata = {**(metadata or {}), **extra}
        if metadata is not None:
            metadata = values.snapshot(metadata)
        q.append((LOG_SINK, _time(), (level, message, metadata)))
        if self._echo:
            echo(level, message, metadata)
        return None

    # lifecycle -----------------------------------------------------------------------------------------
    def _not_started_text(self) -> str:
        return (f"Experiment not started: {self.prefix!r} has not been started; call exp.run.start() or "
                f"use `with exp.run:` before logging")

    def _make_backend(self):
        if self._dash_url:
            from onthefly.tracking.remote import RemoteBackend

            return RemoteBackend.connect(None if self._dash_url is True else str(self._dash_url), self._token)
        from onthefly.tracking.store import LocalStore

        root = self._dash_root or os.environ.get("ONTHEFLY_DASH_ROOT") or DEFAULT_ROOT
        return LocalStore(root, durable=self._config.durable)

    def _set_queue(self, q: Any) -> None:
        self._queue_for_builders = q
        for builder in self._builders:
            builder._q = q

    def _start(self) -> "Experiment":
        with self._lock:
            if self._state == "running":
                return self
            if self._state == "forked":
                raise NotRunning(f"experiment {self.prefix!r} was started in process {self._pid}; this forked "
                                 f"child cannot write to it (create an Experiment in the child instead)")
            backend = self._backend if self._backend is not None else self._make_backend()
            spec = OpenSpec(self.prefix, self.tags, self.readme, self.metadata, self.shared, Status.RUNNING)
            record, _created = backend.open_experiment(spec)
            self._backend, self.record = backend, record
            writer = Writer(backend, self.prefix, self._config)
            writer.start()
            self._writer = writer
            self._uploads = concurrent.futures.ThreadPoolExecutor(self._config.upload_workers,
                                                                  thread_name_prefix="onthefly-upload")
            self._pid = os.getpid()
            self._started_at = _time()  # _ts=-1 inherits only from calls made since (timestamps.py)
            vars(self).update(params=self._params, metrics=self._metrics, tracks=self._tracks, logs=self._logs,
                              files=self._files)  # plain attributes from now on (see _Builder)
            self._state = "running"
            self._set_queue(writer.q)
            with _LIVE_LOCK:
                _LIVE.add(self)
        lifecycle.install(_cancel_all)
        return self

    def _close(self, status: Status, error: str = "", note: str = "") -> None:
        with self._lock:
            if self._state != "running":
                return  # never started, or already closed: nothing to do (as in ML-Dash)
            self._state = "closing"
            self._warn_unsummarized()
            self._set_queue(Refusing(f"experiment {self.prefix!r} is closed ({status.value}); start it again "
                                     f"with exp.run.start() to write more"))
            try:
                writer = self._writer
                wait_for_loggers(self, _LOGGING_CALLS)  # a racing call's row still reaches the writer
                lost = None
                try:
                    writer.close()
                    writer.flush()
                except StorageFailed as exc:  # rows were not stored: the record says so, then the caller
                    lost = exc
                    status, error = Status.FAILED, "; ".join(filter(None, [error, str(exc)]))
                else:
                    reported = writer.loss_report()  # raised by an earlier flush(): the record still says so
                    if reported:
                        status, error = Status.FAILED, "; ".join(filter(None, [error, reported]))
                self._flush_uploads()
                self._uploads.shutdown(wait=True)
                self._remove_staging_dir()
                stats = writer.stats()
                if self._upload_errors:
                    stats["upload_errors"] = list(self._upload_errors)
                self.record = self._backend.set_status(self.prefix, status, error, note, writer=stats)
                if lost is not None:
                    raise lost
            finally:
                self._state = "closed"
                with _LIVE_LOCK:
                    _LIVE.discard(self)

    def _warn_unsummarized(self) -> None:
        """Values put in ``metrics(...).buffer`` or a ``summary_cache`` and never summarized are not
        logged; say so at close, as ML-Dash does."""
        metrics = self._metrics
        pending = metrics._buffer._unsummarized() if metrics._buffer is not None else 0
        pending += sum(b._cache._pending for b in metrics._builders.values() if b._cache is not None)
        if pending:
            warnings.warn(f"onthefly.tracking: {pending} value(s) buffered with metrics(...).buffer() or "
                          f"summary_cache.store() were never summarized and are not logged: call "
                          f"metrics.buffer.log_summary() or summary_cache.summarize() before closing",
                          RuntimeWarning, stacklevel=3)

    def close(self) -> None:
        """Same as ``run.complete()``."""
        self._close(Status.COMPLETED)

    def flush(self) -> None:
        """Write everything logged so far and wait for pending file uploads (fsync when durable). Raises
        TrackingError if a file could not be stored since the last flush."""
        if self._state == "new":
            return  # nothing logged yet (as in ML-Dash)
        if self._state == "running":
            self._writer.flush()
        self._flush_uploads()
        with self._upload_lock:
            errors, self._upload_errors = self._upload_errors, []
        if errors:
            raise TrackingError("file upload(s) failed: " + "; ".join(errors))

    def writer_stats(self) -> dict[str, Any]:
        """What the background writer did: pending, written, refused and failed rows, blocked calls, ..."""
        return self._writer.stats() if self._writer is not None else {}

    # helpers for the builders --------------------------------------------------------------------------
    def _require_started(self, what: str) -> None:
        if self._backend is None or self._state == "new":
            raise NotRunning(f"{what}: " + self._not_started_text())

    def _require_running(self, what: str) -> None:
        if self._state != "running":
            if self._state == "new":
                raise NotRunning(f"{what}: " + self._not_started_text())
            raise NotRunning(f"{what}: experiment {self.prefix!r} is {self._state}; start it again with "
                             f"exp.run.start() to write")

    def _backend_for_read(self):
        self._require_started("reading")
        return self._backend

    def _flush_for_read(self) -> None:
        self._require_started("reading")
        if self._state == "running":
            self._writer.flush()
            self._flush_uploads()

    def _staging_dir(self) -> Path:
        if self._staging is None:
            staging = getattr(self._backend, "staging_dir", None)
            self._staging = Path(staging()) if staging is not None else Path(
                tempfile.mkdtemp(prefix="onthefly-upload-"))
        return self._staging

    def _remove_staging_dir(self) -> None:
        """Remove our temporary upload folder (server mode) if it is empty; never anything else."""
        if self._staging is not None and self._staging.name.startswith("onthefly-upload-"):
            try:
                self._staging.rmdir()
            except OSError:
                pass
            self._staging = None

    def _submit_upload(self, record, staged: Path) -> None:
        future = self._uploads.submit(self._store_file, record, staged)
        with self._upload_lock:
            self._pending_uploads.add(future)
        future.add_done_callback(self._upload_done)

    def _store_file(self, record, staged: Path):
        try:
            stored = self._backend.put_file(self.prefix, record, staged)
        finally:
            if staged.exists():
                remove_staging(staged)
        self._replace_older(record)
        return stored

    def _replace_older(self, record) -> None:
        """A save replaces the file stored at the same path (as in ML-Dash): every copy there but the
        newest (ids sort by time) is deleted. Only the store's own copies are touched."""
        from onthefly.tracking.errors import NotFound

        same = sorted((r for r in self._backend.list_files(self.prefix) if r.path == record.path),
                      key=lambda r: r.id)
        for old in same[:-1]:
            try:
                self._backend.delete_file(self.prefix, old.id)
            except NotFound:  # a concurrent save at the same path removed it first
                pass

    def _upload_done(self, future: concurrent.futures.Future) -> None:
        with self._upload_lock:
            self._pending_uploads.discard(future)
        exc = future.exception()
        if exc is not None:
            text = _describe(exc)
            with self._upload_lock:
                self._upload_errors.append(text)
            warnings.warn(f"onthefly.tracking: a file could not be stored: {text}", RuntimeWarning)

    def _flush_uploads(self) -> None:
        with self._upload_lock:
            pending = list(self._pending_uploads)
        if pending:
            concurrent.futures.wait(pending)


# Python functions only (close looks for their frames): the C MetricBuilder.log needs no waiting (_hotpath.c).
_LOGGING_CALLS = (Experiment.log, log_rows, TrackBuilder.append)


def _exit_status() -> tuple[Status, str]:
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if exc is None:
        failed = lifecycle.failed_exit()
        return (Status.FAILED, failed) if failed else (Status.COMPLETED, "")
    if isinstance(exc, KeyboardInterrupt):
        return Status.CANCELLED, "KeyboardInterrupt"
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return Status.COMPLETED, ""
    return Status.FAILED, _describe(exc)


def _cancel_all(reason: str) -> None:
    """SIGTERM: flush and record every live experiment of this process CANCELLED."""
    with _LIVE_LOCK:
        live = [e for e in _LIVE if e._pid == os.getpid()]
    for exp in live:
        try:
            exp._close(Status.CANCELLED, reason, "closed on SIGTERM")
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            print(f"onthefly.tracking: could not close {exp.prefix} on {reason}: {_describe(exc)}", file=sys.stderr)


@atexit.register
def _close_at_exit() -> None:
    """Flush and close experiments nobody closed (runs before daemon threads are stopped)."""
    with _LIVE_LOCK:
        live = [e for e in _LIVE if e._pid == os.getpid()]
    if not live:
        return
    status, error = _exit_status()
    for exp in live:
        try:
            exp._close(status, error, "closed at interpreter exit (it was never closed explicitly)")
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            print(f"onthefly.tracking: could not close {exp.prefix} at exit: {_describe(exc)}", file=sys.stderr)


def _after_fork_in_child() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
        _LIVE.clear()
    for exp in live:
        exp._state = "forked"
        exp._set_queue(Refusing(f"experiment {exp.prefix!r} belongs to process {exp._pid}; this forked child "
                                f"cannot write to it (create an Experiment in the child instead)"))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


"""What survives the end of a process: a never-closed experiment is flushed at exit, an uncaught exception
is recorded, and after kill -9 everything flushed before is readable and the status says what happened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from onthefly.cli.main import main
from onthefly.tracking import Experiment, Status
from onthefly.tracking.records import StreamKind
from onthefly.tracking.store import LocalStore

PREFIX = "alice/proj/crash"


def _script(body: str) -> str:
    return textwrap.dedent(f"""
        import sys
        from onthefly.tracking import Experiment
        exp = Experiment(prefix={PREFIX!r}, dash_root=sys.argv[1], flush_interval=600, batch_size=100000)
        exp.run.start()
    """) + textwrap.dedent(body)


def _run(tmp_path, body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _script(body), str(tmp_path / "dash")], capture_output=True,
                          text=True, timeout=60)


def _kill_9_when_ready(argv: list[str]) -> None:
    """Run ``argv`` until it prints "ready" (it then waits on stdin), and kill -9 it there."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_never_closed_experiment_is_flushed_and_completed_at_exit(tmp_path):
    out = _run(tmp_path, """
        for i in range(250):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        exp.log("never closed")
        exp.files("out").save_text("kept", to="a.txt")
    """)
    assert out.returncode == 0, out.stderr
    store = LocalStore(tmp_path / "dash")
    record = store.get_experiment(PREFIX)
    assert record.status is Status.COMPLETED
    assert "closed at interpreter exit" in record.history[-1]["note"]
    assert store.read(PREFIX, StreamKind.METRIC, "train")[1] == 250
    assert store.read(PREFIX, StreamKind.LOG, "logs")[0].column("message").to_pylist() == ["never closed"]
    assert [f.filename for f in store.list_files(PREFIX)] == ["a.txt"]
    assert not list((tmp_path / "dash").rglob("_journal-*"))  # turned into Parquet parts


def test_uncaught_exception_at_exit_records_failed(tmp_path):
    out = _run(tmp_path, """
        exp.metrics("train").log(loss=0.5)
        raise RuntimeError("diverged")
    """)
    assert out.returncode == 1 and "diverged" in out.stderr
    store = LocalStore(tmp_path / "dash")
    record = store.get_experiment(PREFIX)
    assert (record.status, record.error) == (Status.FAILED, "RuntimeError: diverged")
    assert store.read(PREFIX, StreamKind.METRIC, "train")[1] == 1


def test_kill_9_keeps_everything_flushed_and_status_says_what_happened(tmp_path, capsys):
    body = """
        for i in range(500):
            exp.metrics("train").log(loss=float(i), step=i)
            exp.tracks("pose").append(x=i, _ts=float(i))
        exp.log("before the kill")
        exp.params.set(lr=0.1)
        exp.flush()
        for i in range(500, 600):
            exp.metrics("train").log(loss=float(i), step=i)  # buffered, never flushed
        print("ready", flush=True)
        sys.stdin.read()
    """
    _kill_9_when_ready([sys.executable, "-c", _script(body), str(tmp_path / "dash")])
    store = LocalStore(tmp_path / "dash")
    table, total = store.read(PREFIX, StreamKind.METRIC, "train")
    assert total >= 500 and table.column("step").to_pylist()[:500] == list(range(500))
    assert store.read(PREFIX, StreamKind.TRACK, "pose")[1] == 500
    assert store.get_params(PREFIX) == {"lr": 0.1}
    record = store.get_experiment(PREFIX)
    assert record.status is Status.RUNNING and record.process_gone()
    assert "is gone" in record.describe_status() and "killed or crashed" in record.describe_status()
    assert main(["experiments", "show", PREFIX, "--root", str(tmp_path / "dash")]) == 0
    assert "killed or crashed" in capsys.readouterr().out
    assert main(["experiments", "list", "--root", str(tmp_path / "dash")]) == 0
    assert "process gone" in capsys.readouterr().out

    # Re-opening the prefix notes what happened, turns the dead journals into parts and appends after them.
    with Experiment(prefix=PREFIX, dash_root=tmp_path / "dash").run as exp:
        exp.metrics("train").log(loss=-1.0, step=10_000)
    record = store.get_experiment(PREFIX)
    assert any("ended without closing" in h["note"] for h in record.history)
    assert record.status is Status.COMPLETED
    steps = exp.metrics("train").read_table().column("step").to_pylist()
    assert steps[:500] == list(range(500)) and steps[-1] == 10_000
    assert not list((tmp_path / "dash").rglob("_journal-*"))


def test_forked_child_cannot_write_to_the_parents_experiment(make_exp):
    exp = make_exp()
    exp.metrics("m").log(v=1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must be refused, clearly
        try:
            exp.metrics("m").log(v=2)
            os.write(write, b"wrote")
        except RuntimeError as exc:
            os.write(write, str(exc).encode()[:500])
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    message = os.read(read, 1000).decode()
    os.close(read)
    assert "forked child cannot write" in message
    assert exp.metrics("m").read()["totalDataPoints"] == 1


def test_kill_9_in_server_mode(server, capsys):
    srv, tokens = server
    body = textwrap.dedent(f"""
        import sys
        from onthefly.tracking import Experiment
        exp = Experiment(prefix={PREFIX!r}, dash_url={srv.address!r}, token={tokens['alice']!r},
                         flush_interval=600, batch_size=100000)
        exp.run.start()
        for i in range(300):
            exp.metrics("train").log(step=i)
        exp.flush()
        print("ready", flush=True)
        sys.stdin.read()
    """)
    _kill_9_when_ready([sys.executable, "-c", body])
    assert srv.store.read(PREFIX, StreamKind.METRIC, "train")[1] == 300
    assert main(["login", "--server", srv.address, "--token", tokens["alice"]]) == 0
    assert main(["experiments", "show", PREFIX, "--server", srv.address]) == 0
    assert "is gone: it ended without closing (killed or crashed)" in capsys.readouterr().out
    with Experiment(prefix=PREFIX, dash_url=srv.address, token=tokens["alice"]).run:
        pass  # re-opening records what happened to the killed writer
    history = srv.store.get_experiment(PREFIX).history
    assert any("ended without closing (killed or crashed)" in h["note"] for h in history)


def test_a_new_streams_folder_is_made_durable_with_its_rows_not_in_the_training_loop(make_exp, monkeypatch):
    """A stream's first write creates its folder and metadata without fsync (that was half the cost of the
    write, on the writer thread during training); the next sync (flush, close) makes them durable together
    with the rows: the metadata file, the folder, and the folder's entry in its parent."""
    from support import wait_until

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    exp = make_exp(durable=True, batch_size=1, flush_interval=600)
    exp.metrics("m").log(v=1.0)
    exp.metrics("m").log(v=2.0)  # the size trigger: written by the writer thread, not synced
    wait_until(lambda: exp.writer_stats()["written_rows"] >= 1, what="a size-triggered write")
    folder = next((exp._backend.root).rglob("_stream.json")).parent
    assert not [p for p in synced if p.startswith(str(folder))]
    exp.flush()
    assert {str(folder / "_stream.json"), str(folder), str(folder.parent)} <= set(synced)
    assert any(p.startswith(str(folder / "_journal-")) for p in synced)

"""SIGTERM flushes and records CANCELLED (and still reaches the program's own handler, or ends the
process as before); sys.exit with a failing code is recorded FAILED."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from onthefly.tracking import Status
from onthefly.tracking.records import StreamKind
from onthefly.tracking.store import LocalStore

PREFIX = "alice/proj/term"


def _start(tmp_path, body: str, before: str = "") -> subprocess.Popen:
    script = textwrap.dedent(before) + textwrap.dedent(f"""
        import sys
        from onthefly.tracking import Experiment
        exp = Experiment(prefix={PREFIX!r}, dash_root=sys.argv[1], flush_interval=600, batch_size=100000)
        exp.run.start()
        for i in range(250):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
    """) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "dash")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _terminate_when_ready(proc) -> tuple[str, str]:
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_flushes_and_records_cancelled(tmp_path):
    proc = _start(tmp_path, """
        print("ready", flush=True)
        sys.stdin.read()
    """)
    _terminate_when_ready(proc)
    assert proc.returncode == -signal.SIGTERM  # the process still ends by the signal
    store = LocalStore(tmp_path / "dash")
    assert store.get_experiment(PREFIX).status is Status.CANCELLED
    assert store.read(PREFIX, StreamKind.METRIC, "train")[1] == 250  # the unflushed batch was written


def test_sigterm_still_reaches_the_programs_own_handler(tmp_path):
    proc = _start(tmp_path, """
        print("ready", flush=True)
        sys.stdin.read()
    """, before="""
        import signal, sys
        def mine(signum, frame):
            print("my handler ran", flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, mine)
    """)
    out, _ = _terminate_when_ready(proc)
    assert "my handler ran" in out and proc.returncode == 0
    assert LocalStore(tmp_path / "dash").get_experiment(PREFIX).status is Status.CANCELLED


def test_a_failing_exit_code_is_recorded_failed(tmp_path):
    proc = _start(tmp_path, """
        sys.exit(3)
    """)
    proc.communicate(timeout=60)
    assert proc.returncode == 3
    record = LocalStore(tmp_path / "dash").get_experiment(PREFIX)
    assert record.status is Status.FAILED and "exited with status 3" in str(record)
    assert LocalStore(tmp_path / "dash").read(PREFIX, StreamKind.METRIC, "train")[1] == 250

"""Real training scripts in their own processes: forked DataLoader workers with a client streaming,
and a script with no client at all that must simply run to the end."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from onthefly.client import RunNotFound, connect, find_run
from onthefly.server.discovery import live_runs
from onthefly.v1 import control_pb2, telemetry_pb2
from support import wait_until

SCRIPT = textwrap.dedent("""
    import sys, torch, torch.nn as nn
    from torch.utils.data import DataLoader, Dataset
    from onthefly import Trainer

    class Data(Dataset):
        def __len__(self): return 512
        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return torch.randn(8, generator=g), i % 2

    workers, paused = int(sys.argv[1]), sys.argv[2] == "paused"
    torch.manual_seed(0)
    model = nn.Linear(8, 2)
    result = Trainer("proc", "workers", max_epochs=3, start_paused=paused, port=0, verbose=False).fit(
        model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
        DataLoader(Data(), batch_size=32, shuffle=True, num_workers=workers))
    print("steps", result.steps, result.state.name)
""")


def _start(tmp_path, workers: int, paused: bool) -> subprocess.Popen:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(workers), "paused" if paused else "free"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _found():
    try:
        return find_run()
    except RunNotFound:
        return None


def test_forked_workers_while_a_client_streams(tmp_path):
    proc = _start(tmp_path, workers=2, paused=True)
    try:
        info = wait_until(_found, timeout=60, what="the trainer's discovery file")
        with connect(address=info.address, token=info.token) as client:
            stream = client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest())
            client.control.Resume(control_pb2.ResumeRequest())  # workers fork now, with the stream open
            events = [e for frame in stream for e in frame.events]
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "steps 48 FINISHED" in out
    indices = [i for e in events if e.WhichOneof("payload") == "sample_losses" for i in e.sample_losses.indices]
    assert sorted(indices) == sorted(list(range(512)) * 3)  # every sample of every epoch, by dataset index
    assert events[-1].lifecycle.kind == telemetry_pb2.LIFECYCLE_KIND_FINISHED


def test_no_client_means_a_clean_normal_exit(tmp_path, runtime_dir):
    proc = _start(tmp_path, workers=0, paused=False)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "steps 48 FINISHED" in out
    assert "Traceback" not in err
    assert list(runtime_dir.glob("*.json")) == []  # discovery file removed at exit


def test_taken_port_sigterm_and_an_open_discovery_folder(tmp_path, runtime_dir):
    """The fallback from a taken port is one warning (no raw gRPC error); SIGTERM removes the discovery
    file and still ends the process by SIGTERM; a discovery folder open to others is made 0700."""
    import signal
    import socket
    import stat

    runtime_dir.mkdir()
    os.chmod(runtime_dir, 0o777)
    script = tmp_path / "train.py"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script.write_text(SCRIPT.replace("port=0, verbose=False", f"port={port}, verbose=True"))
        proc = subprocess.Popen([sys.executable, str(script), "0", "paused"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        try:
            wait_until(lambda: list(runtime_dir.glob("*.json")) or proc.poll() is not None, timeout=120,
                       what="the discovery file")
            assert proc.poll() is None, proc.stderr.read()
            assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert list(runtime_dir.glob("*.json")) == []
    assert "Failed to add port" not in err and "is live on 127.0.0.1:" in err and f":{port} " not in err


FORKING = textwrap.dedent("""
    import os, signal, threading, time, torch, torch.nn as nn
    from onthefly import Trainer
    from onthefly.server.discovery import live_runs

    def fork_a_child_and_terminate_it():
        # As a library's process pool does (cleanlab's find_label_issues): fork while the run serves, then SIGTERM.
        deadline = time.monotonic() + 120
        while not any(r.pid == os.getpid() for r in live_runs()) and time.monotonic() < deadline:
            time.sleep(0.01)
        ready, tell = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(tell, b"1")  # a SIGTERM that lands before Python's after-fork reset is dropped by CPython
            while True:
                signal.pause()
        os.read(ready, 1)
        os.kill(child, signal.SIGTERM)
        _, status = os.waitpid(child, 0)
        print("child", os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exit %d" % os.WEXITSTATUS(status),
              flush=True)

    threading.Thread(target=fork_a_child_and_terminate_it, daemon=True).start()
    model = nn.Linear(8, 2)
    Trainer("proc", "forks", max_steps=10, start_paused=True, port=0, verbose=False).fit(
        model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
        [(torch.randn(4, 8), torch.tensor([0, 1, 0, 1]))])
""")


def test_a_forked_child_terminated_by_sigterm_leaves_the_run_discoverable(tmp_path, runtime_dir):
    """A child forked by the training process inherits the SIGTERM handler but not its clean-up: when it is
    terminated it ends by SIGTERM and the parent's discovery file stays (the lab's label-noise check once
    lost it this way through cleanlab's process pool). The parent's own SIGTERM still removes it."""
    import signal

    script = tmp_path / "train.py"
    script.write_text(FORKING)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))
    try:
        line = proc.stdout.readline()  # the child's fate, printed once it was reaped
        assert line == f"child {int(signal.SIGTERM)}\n", (line, proc.poll())
        assert [r.pid for r in live_runs(runtime_dir)] == [proc.pid], "the parent's discovery file is gone"
        info = find_run()
        with connect(address=info.address, token=info.token) as client:
            assert client.control.GetStatus(control_pb2.GetStatusRequest()).status.step == 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM, err
    assert list(runtime_dir.glob("*.json")) == []

"""`make demo`: a real training run in its own process, watched and steered live from this one.

The trainer (examples/demo_train.py) knows nothing of the demo; this process finds it through its
discovery file, draws the live view, and - like a person at the dashboard would - pauses it, halves
the learning rate, runs the test set, and resumes, showing each receipt.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent


def wait_for_run(deadline_s: float = 60.0):
    from onthefly.client import RunNotFound, find_run

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            return find_run()
        except RunNotFound:
            time.sleep(0.1)
    raise SystemExit("demo: the trainer did not come up within a minute")


def steer(client, out) -> None:
    """Scripted steering, the way a person would use the dashboard."""
    from onthefly.v1 import control_pb2, telemetry_pb2

    for frame in client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
            from_latest=True, kinds=[telemetry_pb2.EVENT_KIND_STEP_METRICS])):
        if any(e.step >= 300 for e in frame.events):
            break
    client.control.Pause(control_pb2.PauseRequest())
    lr = client.control.GetStatus(control_pb2.GetStatusRequest()).status.hyperparameters[0].values["lr"]
    client.control.SetHyperparameters(control_pb2.SetHyperparametersRequest(values={"lr": lr / 2}))
    client.control.RunTest(control_pb2.RunTestRequest(stay_paused=True))
    client.control.Resume(control_pb2.ResumeRequest())


def main() -> int:
    env = dict(os.environ)
    env.setdefault("ONTHEFLY_RUNTIME_DIR", tempfile.mkdtemp(prefix="onthefly-demo-"))
    os.environ["ONTHEFLY_RUNTIME_DIR"] = env["ONTHEFLY_RUNTIME_DIR"]
    trainer = subprocess.Popen([sys.executable, str(HERE / "demo_train.py")], env=env)
    try:
        info = wait_for_run()
        from onthefly.cli.watch import run_watch
        from onthefly.client import connect
        from onthefly.v1 import control_pb2

        with connect(address=info.address, token=info.token) as client:
            status = client.control.GetStatus(control_pb2.GetStatusRequest()).status
            steering = threading.Thread(target=steer, args=(client, sys.stdout), daemon=True)
            steering.start()
            state = run_watch(client, status.total_steps, f"{info.project}/{info.run_name}")
        print(f"demo: run ended {state.state} at step {state.step}; the steering commands are listed above.")
        return trainer.wait(timeout=60)
    finally:
        if trainer.poll() is None:
            trainer.terminate()


if __name__ == "__main__":
    sys.exit(main())

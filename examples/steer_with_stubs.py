"""Steer a running trainer from a script with the generated stubs (no CLI involved).

Start a run first (e.g. `python examples/quickstart.py`), then:  python examples/steer_with_stubs.py
It finds the run through its discovery file, waits for a few steps, pauses, halves the learning
rate, runs the test set while paused, resumes, and prints every receipt.
"""

import sys

from onthefly.client import connect
from onthefly.v1 import control_pb2, telemetry_pb2


def main() -> int:
    with connect() as client:  # the only running trainer; connect(name=...) picks one of several
        status = client.control.GetStatus(control_pb2.GetStatusRequest()).status
        print(f"attached to {status.identity.project}/{status.identity.run_name} at step {status.step}")

        # Follow the stream until 20 more optimizer steps have happened.
        start = status.step
        for frame in client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
                from_latest=True, kinds=[telemetry_pb2.EVENT_KIND_STEP_METRICS])):
            if any(e.step >= start + 20 for e in frame.events):
                break

        pause = client.control.Pause(control_pb2.PauseRequest()).receipt
        print(f"paused at step {pause.applied_step}")
        lr = status.hyperparameters[0].values["lr"]
        changed = client.control.SetHyperparameters(control_pb2.SetHyperparametersRequest(values={"lr": lr / 2}))
        print(f"lr {lr:g} -> {changed.hyperparameters[0].values['lr']:g}, applied at step {changed.receipt.applied_step}")
        try:
            test = client.control.RunTest(control_pb2.RunTestRequest(stay_paused=True))
            print(f"test loss {test.result.loss:.4f} at step {test.receipt.applied_step}")
        except Exception as exc:  # the run may have no test loader
            print(f"no test: {exc}")
        resumed = client.control.Resume(control_pb2.ResumeRequest()).receipt
        print(f"resumed at step {resumed.applied_step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

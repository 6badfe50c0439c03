"""Benchmark helper process: pause and resume a running trainer, as a dashboard or the CLI would.

Between pauses it waits a random 10-30 ms, so pauses land at random points of a step. Before each
Pause it times an empty GetStatus: the round trip of a unary call to this process at that moment,
the floor under any Pause latency. Prints one JSON line: {"pause": [s...], "status": [s...],
"applied_step": [the receipt's step...], "sent": [perf_counter at each Pause...], "resumed": [perf_counter
when each Resume returned...]}.
"""

import json
import random
import sys
import time

from onthefly.client import RunClient
from onthefly.v1 import control_pb2


def main() -> None:
    address, token, pauses = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(0)
    pause, status, applied, sent, resumed = [], [], [], [], []
    with RunClient(address, token) as client:
        for _ in range(pauses):
            time.sleep(rng.uniform(0.010, 0.030))  # pacing, not synchronisation: land at a random phase
            start = time.perf_counter()
            client.control.GetStatus(control_pb2.GetStatusRequest())
            status.append(time.perf_counter() - start)
            start = time.perf_counter()
            receipt = client.control.Pause(control_pb2.PauseRequest()).receipt
            pause.append(time.perf_counter() - start)
            sent.append(start)
            applied.append(receipt.applied_step)
            client.control.Resume(control_pb2.ResumeRequest())
            resumed.append(time.perf_counter())
        client.control.Stop(control_pb2.StopRequest())
    print(json.dumps({"pause": pause, "status": status, "applied_step": applied, "sent": sent, "resumed": resumed}),
          flush=True)


if __name__ == "__main__":
    main()

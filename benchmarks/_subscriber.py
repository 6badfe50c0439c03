"""Benchmark helper process: subscribe to a run and count everything until the stream ends.

Prints one JSON line: events, sample values, first/last frame times, gaps.
"""

import json
import sys
import time

from onthefly.client import RunClient, sample_arrays
from onthefly.v1 import telemetry_pb2


def main() -> None:
    address, token = sys.argv[1], sys.argv[2]
    events = values = gaps = 0
    first = last = None
    with RunClient(address, token) as client:
        print("connected", flush=True)
        for frame in client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest()):
            now = time.perf_counter()
            for e in frame.events:
                events += 1
                if e.WhichOneof("payload") == "sample_losses":
                    _, losses = sample_arrays(e.sample_losses)  # numpy arrays, as a real client wants them
                    values += losses.size
                    if first is None:
                        first = now
                    last = now
            if frame.HasField("gap"):
                gaps += frame.gap.last_seq - frame.gap.first_seq + 1
    print(json.dumps({"events": events, "values": values, "first": first, "last": last, "gaps": gaps,
                      "cpu_seconds": time.process_time()}), flush=True)


if __name__ == "__main__":
    main()

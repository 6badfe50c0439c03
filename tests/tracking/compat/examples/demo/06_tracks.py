"""Tracks: timestamped entries, merging of equal timestamps, slices and floor matching."""
from ml_dash import Experiment

with Experiment("alice/robot/run-1").run as exp:
    pos = exp.tracks("robot/position")
    for i in range(5):
        pos.append(x=i * 0.1, y=i * 0.2, _ts=float(i))
    pos.append(z=9.0, _ts=2.0)  # merged into the entry at t=2
    exp.tracks("robot/gripper").append(open=True, _ts=1.5)
    exp.flush()
    print("entries:", pos.read()["count"])
    print("at t=2:", pos.read(start_timestamp=2.0, end_timestamp=2.0)["entries"])
    window = pos.slice(1.0, 3.0)
    print("slice:", len(window), [e["timestamp"] for e in window])
    print("floor of 2.7:", window.findByTime(2.7)["timestamp"])

"""Quickstart: one experiment, a parameter set, a few metric points and a log line."""
from ml_dash import Experiment

with Experiment("alice/quickstart/run-1", readme="first run", tags=["demo"]).run as exp:
    exp.params.set(learning_rate=0.001, batch_size=32)
    for step in range(5):
        exp.metrics("train").log(loss=1.0 / (step + 1), step=step)
    exp.log("training done")
    print("params:", exp.params.get())
    print("owner/project/name:", exp.owner, exp.project, exp.name)

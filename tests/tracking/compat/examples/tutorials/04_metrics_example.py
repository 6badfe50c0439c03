"""Metrics: log a curve and ask for its statistics right away."""
from ml_dash import Experiment

with Experiment("alice/tutorial/metrics").run as experiment:
    loss = experiment.metrics("loss", description="training loss", tags=["train"])
    for step in range(10):
        loss.log(value=round(2.0 / (step + 1), 4), step=step)
    stats = loss.stats()
    print("points:", stats["totalDataPoints"], "name:", stats["name"], "description:", stats["description"])
    print("metrics:", sorted(m["name"] for m in loss.list_all()))
    print("read:", [p["data"]["value"] for p in loss.read(start_index=8)["data"]])

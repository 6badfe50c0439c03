"""Metrics: named metrics, the unnamed metric with dict-valued keywords, reading back."""
from ml_dash import Experiment

with Experiment("alice/metrics/run-1").run as exp:
    train = exp.metrics("train")
    for step in range(20):
        train.log(loss=round(1.0 / (step + 1), 4), accuracy=step / 20, step=step)
    for epoch in range(3):
        exp.metrics.log(epoch=epoch, train=dict(loss=0.5 - epoch / 10), eval=dict(loss=0.6 - epoch / 10))
    exp.flush()
    page = train.read(start_index=0, limit=5)
    print("first points:", [p["data"]["step"] for p in page["data"]], "more:", page["hasMore"])
    print("eval losses:", [p["data"]["loss"] for p in exp.metrics("eval").read()["data"]])
    print("fields:", sorted(k for k in page["data"][0]["data"] if k != "_ts"))

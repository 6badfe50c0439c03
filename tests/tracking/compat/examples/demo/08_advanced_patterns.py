"""Advanced: summaries with buffer/log_summary and summary_cache, _ts=-1, chaining, the decorator."""
from ml_dash import Experiment, ml_dash_experiment

with Experiment("alice/advanced/run-1").run as exp:
    for epoch in range(2):
        for batch in range(10):
            exp.metrics("train").buffer(loss=1.0 / (batch + 1), acc=batch / 10)
        exp.metrics.buffer.log_summary("mean", "max", epoch=epoch)
    cache = exp.metrics("val").summary_cache
    for v in (0.5, 0.4, 0.3):
        cache.store(loss=v)
    cache.set(epoch=1)
    cache.summarize()
    exp.metrics("sync").log(step=1, _ts=100.0)
    exp.tracks("sync").append(frame=1, _ts=-1)
    exp.metrics.log(epoch=5).flush()
    exp.flush()
    row = exp.metrics("train").read()["data"][-1]["data"]
    print("summary:", {k: round(v, 4) for k, v in sorted(row.items()) if k != "_ts"})
    val = exp.metrics("val").read()["data"][0]["data"]
    print("val:", {k: round(v, 4) for k, v in sorted(val.items()) if k != "_ts"})
    print("track ts:", exp.tracks("sync").read()["entries"][0]["timestamp"])


@ml_dash_experiment("alice/advanced/decorated")
def train(steps, experiment=None):
    for i in range(steps):
        experiment.metrics("loss").log(value=1.0 / (i + 1))
    return steps


print("decorated ran", train(3), "steps")

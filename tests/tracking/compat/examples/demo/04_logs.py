"""Logs: every level, metadata, the console echo."""
from ml_dash import Experiment

with Experiment("alice/logs/run-1").run as exp:
    exp.log("starting", level="info", metadata={"gpu": 0})
    exp.logs.debug("batch shapes", x=[32, 3])
    exp.logs.info("epoch done", epoch=1, loss=0.25)
    exp.logs.warn("slow step", seconds=1.5)
    exp.logs.error("nan seen", step=7)
    exp.logs.fatal("giving up")
    try:
        exp.log("bad", level="loud")
    except ValueError:
        print("invalid level refused")

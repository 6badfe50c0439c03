"""Logging: levels and structured metadata."""
from ml_dash import Experiment

with Experiment("alice/tutorial/logging").run as experiment:
    experiment.logs.info("data loaded", samples=1000, split="train")
    for step in range(3):
        experiment.log(f"step {step}", level="debug", metadata={"step": step})
    experiment.logs.warn("learning rate is high", lr=0.5)
    experiment.logs.error("checkpoint missing", path="ckpt.pt")

"""A complete training loop on a toy problem: params, metrics per epoch, checkpoints, cleanup."""
import os
import random
import shutil

from ml_dash import Experiment

rng = random.Random(0)  # its own generator: ML-Dash draws from the global one for file ids
w = 0.0
os.makedirs("temp_models", exist_ok=True)
with Experiment("alice/tutorial/training", tags=["complete"]).run as experiment:
    experiment.params.set(lr=0.1, epochs=5, optimizer={"name": "sgd", "momentum": 0.0})
    for epoch in range(5):
        xs = [rng.uniform(-1, 1) for _ in range(32)]
        grad = sum(2 * (w * x - 3 * x) * x for x in xs) / len(xs)
        w -= 0.1 * grad
        loss = sum((w * x - 3 * x) ** 2 for x in xs) / len(xs)
        experiment.metrics("train").log(loss=round(loss, 6), w=round(w, 6), epoch=epoch)
        path = os.path.join("temp_models", f"epoch_{epoch}.txt")
        with open(path, "w") as f:
            f.write(str(w))
        experiment.files("checkpoints").upload(path, to=f"epoch_{epoch}.txt")
        experiment.logs.info("epoch finished", epoch=epoch, loss=round(loss, 4))
    shutil.rmtree("temp_models")  # before the experiment closes
print("final w:", round(w, 4))

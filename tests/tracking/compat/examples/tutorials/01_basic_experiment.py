"""A basic experiment: metadata, parameters, metrics and logs; prints where it is stored."""
from ml_dash import Experiment

with Experiment("alice/tutorial/basic", readme="A basic experiment", tags=["tutorial"],
                description="kept by ml-dash nowhere").run as experiment:
    experiment.params.set(lr=0.01, epochs=3)
    for epoch in range(3):
        experiment.metrics("train").log(loss=1.0 / (epoch + 1), epoch=epoch)
        experiment.log(f"epoch {epoch} done")
    print("stored in:", experiment._storage.root_path)
    print("name:", experiment.name, "tags:", experiment.tags)

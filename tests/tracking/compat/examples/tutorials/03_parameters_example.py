"""Parameters: a nested configuration, an update, the flattening helpers."""
from ml_dash import Experiment, ParametersBuilder

config = {"model": {"hidden": 256, "layers": 4}, "data": {"batch": 64}, "seed": 7}
with Experiment("alice/tutorial/params").run as experiment:
    experiment.params.set(**config)
    experiment.params.set(model={"hidden": 512})
    print("flat:", sorted(experiment.params.get().items()))
    print("nested equals config after the update:",
          experiment.params.get(flatten=False) == {**config, "model": {"hidden": 512, "layers": 4}})
print("helpers:", ParametersBuilder.flatten_dict({"a": {"b": 1}}), ParametersBuilder.unflatten_dict({"a.b": 1}))

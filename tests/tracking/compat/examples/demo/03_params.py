"""Parameters: nested dicts, updates, config classes, flat and nested reads."""
from ml_dash import Experiment


class Args:
    lr = 3e-4
    depth = 12
    name = "vit"


with Experiment("alice/params/run-1").run as exp:
    exp.params.set(model={"arch": "resnet", "layers": 50}, optimizer="adam")
    exp.params.set(model={"dropout": 0.1})
    exp.params.log(Args=Args)
    print("flat:", sorted(exp.params.get().items()))
    print("nested:", exp.params.get(flatten=False)["model"])

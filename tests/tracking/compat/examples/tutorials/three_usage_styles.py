"""The three ways to run an experiment: with, start/complete, the decorator."""
from ml_dash import Experiment, ml_dash_experiment

with Experiment("alice/styles/with").run as exp:
    exp.metrics("m").log(v=1)
    print("with: started")

exp = Experiment("alice/styles/direct")
exp.run.start()
exp.metrics("m").log(v=2)
exp.run.complete()
print("direct: completed")


@ml_dash_experiment("alice/styles/decorator")
def train(experiment=None):
    experiment.metrics("m").log(v=3)
    return "decorator: done"


print(train())

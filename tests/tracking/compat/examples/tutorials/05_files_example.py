"""Files: save a model file and read back what the upload returned."""
from ml_dash import Experiment

with open("model.pt", "wb") as f:
    f.write(b"fake model" * 10)
with Experiment("alice/tutorial/files").run as experiment:
    result = experiment.files("models").upload("model.pt", description="trained model", tags=["final"])
    print("uploaded:", result["filename"], result["path"], result["sizeBytes"], result["tags"])
    print("listed:", [f["filename"] for f in experiment.files("models").list()])

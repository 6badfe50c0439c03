"""Files: upload a file and remove it straight after; save text and JSON; list them."""
import os

from ml_dash import Experiment

with Experiment("alice/files/run-1").run as exp:
    with open("weights.bin", "wb") as f:
        f.write(b"\x00" * 64)
    exp.files("models").upload("weights.bin", to="model.bin")
    os.unlink("weights.bin")  # the upload must not need the source any more
    exp.files("configs").save_json({"lr": 0.1}, to="config.json")
    exp.files("notes").save_text("hello", to="readme.txt")
exp2 = Experiment("alice/files/run-1").run.start()
print("files:", sorted((f["path"], f["filename"], f["sizeBytes"]) for f in exp2.files.list()))
print("readme:", exp2.files("notes/readme.txt").read_text())
exp2.run.complete()

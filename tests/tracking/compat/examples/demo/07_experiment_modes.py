"""Modes: local by default (a folder); the remote parts are left out (they need a server)."""
from ml_dash import Experiment, OperationMode

exp = Experiment("alice/modes/local-run", dash_root=".dash")
print("mode:", exp.mode, exp.mode == OperationMode.LOCAL)
with exp.run:
    exp.metrics("m").log(v=1)
print("stored under:", sorted(p for p in __import__("os").listdir(".dash/alice/modes")))

"""The dxp singleton: kept commented out, as ML-Dash's own demo does (theirs is remote-only)."""
from ml_dash import Experiment

# from ml_dash.auto_start import dxp
# with dxp.run:
#     dxp.params.set(lr=0.1)
with Experiment("alice/singleton/run-1").run as exp:
    exp.params.set(lr=0.1)
    print("params:", exp.params.get())

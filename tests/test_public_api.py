"""The names people import from the top-level package resolve, and `import onthefly` stays light."""

import subprocess
import sys

import onthefly


def test_every_exported_name_resolves():
    for name in onthefly.__all__:
        assert getattr(onthefly, name) is not None, name
    assert {"Trainer", "quickstart", "attach_lightning", "Experiment", "connect"} <= set(onthefly.__all__)


def test_import_does_not_load_torch_or_grpc():
    code = "import sys, onthefly; print('torch' in sys.modules, 'grpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

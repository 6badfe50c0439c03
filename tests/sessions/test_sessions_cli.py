"""`onthefly checkpoint / checkpoints / export PATH / import PATH / session` against a real run."""

from __future__ import annotations

import pytest

from onthefly import Trainer
from onthefly.cli.main import main
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2
from sessions.helpers import setup
from support import wait_until


@pytest.fixture
def run(live_run):
    model, opt, loss, loader, sched, val = setup()
    return live_run(Trainer("cli", "sessions", max_steps=10_000, port=0, start_paused=True, verbose=False,
                            hooks=[Sessions(on_pause=False)]), model, opt, loss, loader, scheduler=sched)


def _cli(capsys, run, *argv):
    code = main(["--address", run.trainer.address, "--token", run.trainer.token, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_checkpoint_export_import_from_the_command_line(run, capsys, tmp_path, monkeypatch):
    run.client.control.Step(control_pb2.StepRequest(steps=3))
    wait_until(lambda: run.trainer.run.step == 3 and run.trainer.run.control.state.name == "PAUSED")
    code, out, _ = _cli(capsys, run, "checkpoint", "--label", "three")
    assert code == 0 and out.startswith("checkpoint step0000003-") and "at step 3 (epoch 0, batch 3)" in out
    code, out, _ = _cli(capsys, run, "checkpoints")
    assert code == 0 and "step 3" in out and "request" in out and "'three'" in out

    monkeypatch.chdir(tmp_path)  # a relative PATH means the caller's directory, not the trainer's
    code, out, _ = _cli(capsys, run, "export", "three.onthefly")
    assert code == 0 and f"exported step 3 to {tmp_path / 'three.onthefly'}" in out
    code, _, err = _cli(capsys, run, "export", "three.onthefly")
    assert code == 1 and "FAILED_PRECONDITION" in err and "already exists" in err and len(err.splitlines()) == 1
    assert _cli(capsys, run, "export", "three.onthefly", "--force")[0] == 0

    run.client.control.Step(control_pb2.StepRequest(steps=4))
    wait_until(lambda: run.trainer.run.step == 7 and run.trainer.run.control.state.name == "PAUSED")
    code, out, _ = _cli(capsys, run, "import", "three.onthefly")
    assert code == 0 and "continuing from step 3 (epoch 0, batch 3)" in out and "lineage:" in out
    assert run.trainer.run.step == 3
    code, out, _ = _cli(capsys, run, "session")
    assert code == 0 and "imported from" in out and str(tmp_path / "three.onthefly") in out

    (tmp_path / "junk.onthefly").write_bytes(b"not a bundle at all, just some bytes " * 4)
    code, _, err = _cli(capsys, run, "import", "junk.onthefly")
    assert code == 1 and "INVALID_ARGUMENT" in err and "not an OnTheFly session bundle" in err
    code, _, err = _cli(capsys, run, "import", "missing.onthefly")
    assert code == 1 and "does not exist" in err

"""`onthefly lab` on bad input: it never replaces or deletes a file it did not create, and refuses bad
numbers with a one-line message instead of a traceback."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from onthefly import Trainer
from onthefly.cli.main import main
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2
from support import wait_until


@pytest.fixture
def run(live_run, tmp_path):
    torch.manual_seed(0)
    model = BoringModel()
    trainer = Trainer("cli", "lab", max_steps=10_000, port=0, start_paused=True, verbose=False, seed=1,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    live = live_run(trainer, model, torch.optim.SGD(model.parameters(), lr=0.05), torch.nn.CrossEntropyLoss(),
                    DataLoader(boring_dataset(100, seed=1), batch_size=20, shuffle=True))
    live.client.control.Step(control_pb2.StepRequest(steps=5))
    wait_until(lambda: trainer.run.step == 5 and trainer.run.control.state.name == "PAUSED", what="5 steps")
    return live


def _cli(capsys, run, *argv):
    code = main(["--address", run.trainer.address, "--token", run.trainer.token, "lab", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_failed_export_leaves_the_users_files_alone(run, capsys, tmp_path):
    out = tmp_path / "r1.parquet"
    mine = tmp_path / "r1.parquet.partial"  # the user's own file, whatever its name
    mine.write_text("my notes")
    code, _, err = _cli(capsys, run, "export", "r1", "-o", str(out))
    assert code == 1 and "NOT_FOUND" in err
    assert mine.read_text() == "my notes" and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["r1.parquet.partial"]


@pytest.mark.parametrize("argv", [("regions", "--k", "-1"), ("regions", "--max-regions", "-2"),
                                  ("regions", "--k", str(2**32)), ("hist", "--bins", "-5"), ("top", "-k", "-3")])
def test_a_negative_or_huge_count_is_a_usage_error(run, capsys, argv):
    with pytest.raises(SystemExit) as done:
        _cli(capsys, run, *argv)
    assert done.value.code == 2
    assert f"argument {argv[1]}" in capsys.readouterr().err


def test_exporting_onto_a_folder_is_a_clear_error(run, capsys, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "kept.txt").write_text("mine")
    assert _cli(capsys, run, "select", "top", "--band", "0.5", "1")[0] == 1  # no scoring pass yet
    assert _cli(capsys, run, "score")[0] == 0
    assert _cli(capsys, run, "select", "top", "--band", "0.5", "1")[0] == 0
    code, _, err = _cli(capsys, run, "export", "top", "-o", str(folder), "--force")
    assert code == 1 and "is a folder" in err
    assert sorted(p.name for p in folder.iterdir()) == ["kept.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exports", "onthefly-run", "store"]

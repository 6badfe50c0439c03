"""`onthefly lab score / regions / show / export / import / select / hist / quantiles / top / trajectory`
against a real run: text for people, --json for scripts, files written by the CLI (never the server)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.cli.main import main
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import lab_of
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2
from support import wait_until


@pytest.fixture
def run(live_run, tmp_path):
    torch.manual_seed(0)
    base = boring_dataset(200, seed=1)
    train, _ = random_split(base, [0.8, 0.2], generator=torch.Generator().manual_seed(1))
    model = BoringModel()
    trainer = Trainer("cli", "lab", max_steps=10_000, port=0, start_paused=True, verbose=False, seed=1,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    live = live_run(trainer, model, torch.optim.SGD(model.parameters(), lr=0.05), torch.nn.CrossEntropyLoss(),
                    DataLoader(train, batch_size=20, shuffle=True))
    live.client.control.Step(control_pb2.StepRequest(steps=20))
    wait_until(lambda: trainer.run.step == 20 and trainer.run.control.state.name == "PAUSED", what="20 steps")
    live.train = train
    return live


def _cli(capsys, run, *argv):
    code = main(["--address", run.trainer.address, "--token", run.trainer.token, "lab", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_score_regions_show_export_import(run, capsys, tmp_path):
    code, out, _ = _cli(capsys, run, "score")
    assert code == 0 and f"{len(run.train)} samples scored at step 20" in out
    code, out, _ = _cli(capsys, run, "score", "--json")
    row = json.loads(out)
    assert row["split"] == "train" and row["samples"] == len(run.train) and row["step"] == 20

    code, out, _ = _cli(capsys, run, "regions", "--k", "4", "--ratio", "1", "--seed", "2")
    assert code == 0 and "region(s) among 160 samples (k=4" in out and "  r1 " in out
    code, out, _ = _cli(capsys, run, "regions", "--latest", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0]["region"] == "r1" and rows[0]["k"] == 4 and rows[0]["seed"] == 2
    code, out, _ = _cli(capsys, run, "show", "r1")
    assert code == 0 and out.startswith("r1: ") and "classes:" in out and "examples:" in out
    assert json.loads(_cli(capsys, run, "show", "r1", "--json")[1])["size"] == rows[0]["size"]

    members = sorted(lab_of(run.trainer.run).region("r1").indices.tolist())
    target = tmp_path / "r1.parquet"
    code, out, _ = _cli(capsys, run, "export", "r1", "--format", "parquet", "-o", str(target))
    assert code == 0 and f"{len(members)} samples to {target}" in out
    assert sorted(pq.read_table(target).column("index").to_pylist()) == members  # every member's base index
    code, _, err = _cli(capsys, run, "export", "r1", "-o", str(target))
    assert code == 1 and "already exists" in err
    csv = tmp_path / "r1.csv"
    assert _cli(capsys, run, "export", "r1", "--format", "csv", "-o", str(csv), "--columns", "loss",
                "loss_history")[0] == 0
    assert csv.read_text().splitlines()[0] == '"index","split","loss","loss_history"'
    code, out, _ = _cli(capsys, run, "import", "again", str(csv), "--json")
    assert code == 0 and json.loads(out)["size"] == len(members)
    assert sorted(lab_of(run.trainer.run).slice_of("again").indices.tolist()) == members

    code, _, err = _cli(capsys, run, "show", "r42")
    assert code == 1 and "NOT_FOUND" in err and "r1" in err and len(err.splitlines()) == 1
    code, _, err = _cli(capsys, run, "regions", "--k", "100000")
    assert code == 1 and "INVALID_ARGUMENT" in err
    code, _, err = _cli(capsys, run, "score", "--layer", "missing")
    assert code == 1 and "INVALID_ARGUMENT" in err and "no layer named 'missing'" in err


def test_statistics_and_trajectory(run, capsys):
    code, out, _ = _cli(capsys, run, "hist", "--bins", "5", "--json")
    h = json.loads(out)
    assert code == 0 and len(h["counts"]) == 5 and sum(h["counts"]) == h["total"] == len(run.train)
    code, out, _ = _cli(capsys, run, "quantiles", "--ranks", "0.5")
    assert code == 0 and out.startswith("q0.5=")
    code, out, _ = _cli(capsys, run, "top", "-k", "3", "--json")
    top = [json.loads(line) for line in out.splitlines()]
    assert len(top) == 3 and top[0]["loss"] >= top[1]["loss"] >= top[2]["loss"]
    code, out, _ = _cli(capsys, run, "trajectory", str(top[0]["index"]), "--split", "train", "--json")
    series = json.loads(out)
    assert code == 0 and series["index"] == top[0]["index"] and series["losses"][-1] == pytest.approx(top[0]["loss"])
    code, _, err = _cli(capsys, run, "select", "hard", "--band", "0.9", "1")
    assert code == 1 and "FAILED_PRECONDITION" in err and "no train scoring pass yet" in err
    assert _cli(capsys, run, "score")[0] == 0
    code, out, _ = _cli(capsys, run, "classes", "--json")
    classes = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and sum(c["samples"] for c in classes) == len(run.train)
    assert [c["error_rate"] for c in classes] == sorted((c["error_rate"] for c in classes), reverse=True)
    code, out, _ = _cli(capsys, run, "select", "hard", "--band", "0.9", "1", "--json")
    assert code == 0 and json.loads(out)["name"] == "hard"
    code, out, _ = _cli(capsys, run, "slices", "--json")
    assert code == 0 and [json.loads(line)["name"] for line in out.splitlines()] == ["hard"]
    code, _, err = _cli(capsys, run, "select", "x")
    assert code == 1 and "exactly one rule" in err

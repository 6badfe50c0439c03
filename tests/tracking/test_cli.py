"""The tracking CLI: experiments list/show/export (Parquet, CSV, JSON), push to a server and pull back."""

from __future__ import annotations

import csv
import json
import math

import pyarrow.parquet as pq
import pytest

from onthefly.cli.main import main
from onthefly.tracking import Experiment, Status
from onthefly.tracking.store import LocalStore

PREFIX = "alice/proj/run-1"


@pytest.fixture
def filled(dash, tmp_path):
    """A closed local experiment with a metric (with a NaN), a track, logs, params and a file."""
    with Experiment(prefix=PREFIX, dash_root=dash, tags=["cli"], readme="for the CLI").run as exp:
        for step in range(5):
            exp.metrics("train/loss").log(loss=float(step) if step != 3 else math.nan, step=step)
        exp.tracks("pose").append(x=1.0, q=[0.1, 0.2], _ts=10.0)
        exp.tracks("pose").append(x=2.0, q=[0.3, 0.4], _ts=20.0)
        exp.log("hello", metadata={"k": 1})
        exp.params.set(lr=0.1, model={"depth": 2})
        exp.files("out").save_text("artifact", to="a.txt")
    with Experiment(prefix="alice/other/run-2", dash_root=dash).run:
        pass
    return dash


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_show(filled, capsys):
    code, out, _ = _cli(capsys, "experiments", "list", "--root", filled)
    assert code == 0 and PREFIX in out and "alice/other/run-2" in out and "COMPLETED" in out
    code, out, _ = _cli(capsys, "experiments", "list", "--root", filled, "--under", "alice/proj", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["prefix"] for r in rows] == [PREFIX] and rows[0]["status"] == "COMPLETED"
    code, out, _ = _cli(capsys, "experiments", "show", PREFIX, "--root", filled)
    assert code == 0 and "status   COMPLETED" in out and "metric train/loss  5 rows" in out
    assert "track  pose  2 rows" in out and "params   2   files 1" in out and "readme   for the CLI" in out
    code, out, _ = _cli(capsys, "experiments", "show", PREFIX, "--root", filled, "--json")
    shown = json.loads(out)
    assert shown["params"] == {"lr": 0.1, "model.depth": 2} and shown["file_count"] == 1
    assert {(s["kind"], s["name"], s["rows"]) for s in shown["streams"]} >= {("metric", "train/loss", 5),
                                                                              ("track", "pose", 2)}


def test_export_parquet_csv_json(filled, tmp_path, capsys):
    out_pq = tmp_path / "loss.parquet"
    code, out, _ = _cli(capsys, "experiments", "export", PREFIX, "--metric", "train/loss", "--out", out_pq,
                        "--root", filled)
    assert code == 0 and "wrote 5 rows" in out
    table = pq.read_table(out_pq)
    assert table.column("step").to_pylist() == [0, 1, 2, 3, 4] and math.isnan(table.column("loss")[3].as_py())

    out_csv = tmp_path / "pose.csv"
    assert _cli(capsys, "experiments", "export", PREFIX, "--track", "pose", "--out", out_csv, "--root",
                filled)[0] == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [float(r["x"]) for r in rows] == [1.0, 2.0] and json.loads(rows[0]["q"]) == [0.1, 0.2]

    out_json = tmp_path / "loss.json"
    assert _cli(capsys, "experiments", "export", PREFIX, "--metric", "train/loss", "--out", out_json,
                "--root", filled)[0] == 0
    data = json.loads(out_json.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in exported JSON"))
    assert data[3]["loss"] == {"$float": "NaN"} and data[4]["loss"] == 4.0

    out_jsonl = tmp_path / "logs.jsonl"
    assert _cli(capsys, "experiments", "export", PREFIX, "--logs", "--out", out_jsonl, "--root", filled)[0] == 0
    assert json.loads(out_jsonl.read_text().splitlines()[0])["message"] == "hello"

    window = tmp_path / "window.json"
    assert _cli(capsys, "experiments", "export", PREFIX, "--track", "pose", "--start-time", 15, "--out", window,
                "--root", filled)[0] == 0
    assert [r["x"] for r in json.loads(window.read_text())] == [2.0]

    code, _, err = _cli(capsys, "experiments", "export", PREFIX, "--metric", "train/loss", "--out", out_pq,
                        "--root", filled)
    assert code == 1 and "exists; pass --force" in err
    assert _cli(capsys, "experiments", "export", PREFIX, "--metric", "train/loss", "--out", out_pq, "--force",
                "--root", filled)[0] == 0


def test_errors_are_one_line_and_nonzero(filled, tmp_path, capsys):
    code, _, err = _cli(capsys, "experiments", "show", "alice/proj/none", "--root", filled)
    assert code == 1 and "no experiment 'alice/proj/none'" in err and err.count("\n") == 1
    code, _, err = _cli(capsys, "experiments", "list", "--root", tmp_path / "nowhere")
    assert code == 1 and "no local store" in err
    code, _, err = _cli(capsys, "experiments", "export", PREFIX, "--metric", "nope", "--out", tmp_path / "x.csv",
                        "--root", filled)
    assert code == 1 and "has no metric named 'nope'" in err
    code, _, err = _cli(capsys, "experiments", "export", PREFIX, "--out", tmp_path / "x.csv", "--root", filled)
    assert code == 1 and "--metric NAME, --track NAME or --logs" in err


def test_push_then_pull_round_trips(filled, server, tmp_path, capsys):
    srv, tokens = server
    assert _cli(capsys, "login", "--server", srv.address, "--token", tokens["alice"])[0] == 0
    code, out, _ = _cli(capsys, "push", PREFIX, "--root", filled)
    assert code == 0 and f"pushed {PREFIX} to {srv.address}" in out and "1 files copied" in out
    code, out, _ = _cli(capsys, "push", PREFIX, "--root", filled)  # idempotent
    assert code == 0 and "0 files copied, 1 already there" in out
    remote = srv.store
    assert remote.get_experiment(PREFIX).status is Status.COMPLETED
    assert remote.read(PREFIX, "metric", "train/loss")[1] == 5  # replaced, not doubled
    assert remote.get_params(PREFIX) == {"lr": 0.1, "model.depth": 2}

    code, out, _ = _cli(capsys, "experiments", "show", PREFIX, "--server", srv.address)
    assert code == 0 and "metric train/loss  5 rows" in out

    pulled = tmp_path / "pulled"
    code, out, _ = _cli(capsys, "pull", PREFIX, "--root", pulled, "--as", "alice/copies/run-1")
    assert code == 0 and "pulled alice/copies/run-1" in out
    with Experiment(prefix="alice/copies/run-1", dash_root=pulled).run as exp:
        assert [r["data"]["step"] for r in exp.metrics("train/loss").read()["data"]] == [0, 1, 2, 3, 4]
        assert exp.tracks("pose").read()["entries"][1]["q"] == [0.3, 0.4]
        assert exp.files("out/a.txt").read_text() == "artifact"
        assert exp.logs.read()[0]["metadata"] == {"k": 1}
        assert exp.params.get(flatten=False) == {"lr": 0.1, "model": {"depth": 2}}
    assert LocalStore(pulled).get_experiment("alice/copies/run-1").tags == ["cli"]

    code, _, err = _cli(capsys, "push", "alice/other/run-2", "--root", filled, "--as", "bob/stolen/run")
    assert code == 1 and "alice may not write 'bob/stolen/run'" in err

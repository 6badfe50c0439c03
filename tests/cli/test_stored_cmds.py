"""`onthefly stored list | series`: a finished run read back from its session store and its tracked
experiment with no run serving, downsampled to the buckets asked, the two stores agreeing."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onthefly.cli.main import main
from onthefly.tracking.records import StreamKind
from onthefly.tracking.store import LocalStore


# The run trains in a child process: a session stays the live run's (locked) until its process ends.
CHILD = """
import json, sys
from torch.utils.data import DataLoader
from onthefly import Trainer
from onthefly.demos.boring import boring_dataset, boring_setup
model, opt, loss_fn, loader = boring_setup(seed=3, n=128, batch_size=16)
val = DataLoader(boring_dataset(64, seed=1), batch_size=32)
trainer = Trainer("stored", "tiny", max_epochs=3, serve=False, verbose=False,
                  track={"dash_root": sys.argv[1], "durable": False})
result = trainer.fit(model, opt, loss_fn, loader, val_loader=val)
print(json.dumps({"steps": result.steps, "val_loss": result.val.loss, "prefix": trainer.experiment.prefix,
                  "run_id": trainer.run.identity.run_id}))
"""


@dataclasses.dataclass
class Finished:
    store: Path
    dash: Path
    steps: int
    val_loss: float
    prefix: str
    run_id: str

    @property
    def train_rows(self) -> list[dict]:
        return LocalStore(self.dash).read(self.prefix, StreamKind.METRIC, "train")[0].to_pylist()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stored")
    store, dash = tmp / "store", tmp / "dash"
    env = {**os.environ, "ONTHEFLY_STORE": str(store), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(dash)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return Finished(store, dash, **json.loads(done.stdout.strip().splitlines()[-1]))


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_the_finished_session_and_the_tracked_experiment(finished, capsys):
    store, dash = finished.store, finished.dash
    code, out, _ = _run(capsys, "stored", "list", "--json", "--store", str(store), "--tracking", str(dash))
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    (session,) = [r for r in rows if r["kind"] == "session"]
    (experiment,) = [r for r in rows if r["kind"] == "experiment"]
    assert session["state"] == "finished" and session["project"] == "stored" and session["run_name"] == "tiny"
    assert session["last_step"] == finished.steps == 24
    assert experiment["id"] == finished.prefix and experiment["state"] == "completed"
    assert experiment["run_id"] == session["run_id"] == finished.run_id


def test_series_of_both_stores_agree_and_are_downsampled(finished, capsys):
    store, dash = finished.store, finished.dash
    (session_id,) = [p.name for p in (store / "sessions").iterdir()]
    code, out, err = _run(capsys, "stored", "series", "--store", str(store), "--tracking", str(dash),
                          "--session", session_id, "--experiment", finished.prefix,
                          "--metric", "loss", "--metric", "val/loss", "--metric", "lr", "--json")
    assert code == 0, err
    body = json.loads(out)
    session, experiment = body["sources"]
    assert session["label"] == f"stored/tiny ({session_id})" and experiment["label"] == finished.prefix
    train_rows = finished.train_rows
    for source in (session, experiment):
        loss = source["series"]["loss"]
        assert loss["x"] == list(range(1, 25)) and loss["points"] == 24
        assert loss["y"] == pytest.approx([row["loss"] for row in train_rows])
        assert source["series"]["lr"]["y"] == [0.05] * 24
        val = source["series"]["val/loss"]
        assert len(val["x"]) == 3 and val["y"][-1] == pytest.approx(finished.val_loss)

    # An evaluation metric besides the loss is read line by line, not columnar: the two readings agree.
    code, out, _ = _run(capsys, "stored", "series", "--store", str(store), "--tracking", str(dash),
                        "--session", session_id, "--experiment", finished.prefix,
                        "--metric", "loss", "--metric", "val/loss", "--metric", "val/accuracy", "--json")
    line_by_line, tracked = json.loads(out)["sources"]
    assert code == 0 and line_by_line["series"]["loss"] == session["series"]["loss"]
    assert line_by_line["series"]["val/loss"] == session["series"]["val/loss"]
    accuracy = line_by_line["series"]["val/accuracy"]
    assert len(accuracy["x"]) == 3 and accuracy["y"] == pytest.approx(tracked["series"]["val/accuracy"]["y"])

    code, out, _ = _run(capsys, "stored", "series", "--store", str(store),
                        "--session", str(store / "sessions" / session_id),
                        "--metric", "loss", "--buckets", "2", "--json")
    loss = json.loads(out)["sources"][0]["series"]["loss"]
    ys = [row["loss"] for row in train_rows]
    assert code == 0 and len(loss["x"]) <= 6 and loss["points"] == 24  # 2 buckets: min, max of each, the ends
    assert min(loss["y"]) == pytest.approx(min(ys)) and max(loss["y"]) == pytest.approx(max(ys))


def test_what_cannot_be_read_is_named_and_the_rest_is_still_read(finished, capsys):
    store, dash = finished.store, finished.dash
    (session_id,) = [p.name for p in (store / "sessions").iterdir()]
    code, out, err = _run(capsys, "stored", "series", "--store", str(store), "--tracking", str(dash),
                          "--session", "20990101-000000-gone00", "--session", session_id,
                          "--experiment", "nobody/nothing/here", "--json")
    gone, found, missing = json.loads(out)["sources"]
    assert code == 1
    assert "no session 20990101-000000-gone00" in gone["error"] and "onthefly stored list" in gone["error"]
    assert found["series"]["loss"]["points"] == 24
    assert "nobody/nothing/here" in missing["error"]
    assert len(err.splitlines()) == 2
    code, _, err = _run(capsys, "stored", "series", "--store", str(store), "--session", session_id, "--buckets", "0")
    assert code == 1 and "buckets must be between 1 and" in err
    code, _, err = _run(capsys, "stored", "series")
    assert code == 1 and "--session ID" in err


def test_a_run_that_went_back_to_a_checkpoint_reads_back_as_the_run_kept_it(live_run, tmp_path, monkeypatch, capsys):
    from onthefly import Trainer
    from onthefly.sessions import Sessions, sessions_of
    from onthefly.v1 import control_pb2
    from sessions.helpers import setup
    from support import wait_until

    store = tmp_path / "store"
    monkeypatch.setenv("ONTHEFLY_STORE", str(store))
    model, opt, loss, loader, sched, _ = setup()
    run = live_run(Trainer("cli", "stored-restore", max_steps=10_000, port=0, start_paused=True, verbose=False,
                           hooks=[Sessions(on_pause=False)]), model, opt, loss, loader, scheduler=sched)
    remote = ["--address", run.trainer.address, "--token", run.trainer.token]

    def step_to(n: int, steps: int) -> None:
        run.client.control.Step(control_pb2.StepRequest(steps=steps))
        wait_until(lambda: run.trainer.run.step == n and run.trainer.run.control.state.name == "PAUSED")

    step_to(3, 3)
    assert main([*remote, "checkpoint"]) == 0
    checkpoint_id = capsys.readouterr().out.split()[1]
    step_to(7, 4)
    assert main([*remote, "restore", checkpoint_id]) == 0
    step_to(5, 2)
    assert main([*remote, "checkpoint"]) == 0  # a checkpoint writes the history buffered so far
    capsys.readouterr()

    session = sessions_of(run.trainer).require_session()
    code, out, _ = _run(capsys, "stored", "list", "--json", "--store", str(store), "--tracking", str(tmp_path / "none"))
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and row["id"] == session.session_id and row["state"] == "running"
    code, out, err = _run(capsys, "stored", "series", "--store", str(store), "--session", session.session_id,
                          "--metric", "loss", "--json")
    assert code == 0, err
    loss_series = json.loads(out)["sources"][0]["series"]["loss"]
    kept = session.history.metric_range(["loss"]).series["loss"]
    assert loss_series["x"] == [1, 2, 3, 4, 5] == kept[0].tolist()  # steps 4-7 before the restore are gone
    assert loss_series["y"] == pytest.approx(kept[1].tolist())
    # The same answer from the events files alone (a session written before metrics-N.feather existed, or
    # one whose column copy did not get written): the columns are a faster copy, never a different truth.
    import shutil

    assert list(store.rglob("metrics-*.feather")), "the history wrote no metric columns"
    events_only = tmp_path / "events-only"
    shutil.copytree(store, events_only)
    for side in events_only.rglob("metrics-*.feather"):
        side.unlink()
    code, out, err = _run(capsys, "stored", "series", "--store", str(events_only), "--session", session.session_id,
                          "--metric", "loss", "--json")
    assert code == 0 and json.loads(out)["sources"][0]["series"]["loss"] == loss_series, err


def test_metric_columns_and_events_read_back_the_same(finished, capsys, tmp_path):
    import shutil

    (session_id,) = [p.name for p in (finished.store / "sessions").iterdir()]
    assert list(finished.store.rglob("metrics-*.feather")), "the history wrote no metric columns"
    events_only = tmp_path / "store"
    shutil.copytree(finished.store, events_only)
    for side in events_only.rglob("metrics-*.feather"):
        side.unlink()
    answers = []
    for store in (finished.store, events_only):
        code, out, err = _run(capsys, "stored", "series", "--store", str(store), "--session", session_id,
                              "--metric", "loss", "--metric", "val/loss", "--metric", "lr", "--metric", "grad_norm",
                              "--json")
        assert code == 0, err
        answers.append(json.loads(out)["sources"][0]["series"])
    assert answers[0] == answers[1] and len(answers[0]["loss"]["x"]) == finished.steps

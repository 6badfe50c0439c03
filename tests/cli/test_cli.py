"""The CLI against a real run: one trainer needs no naming; errors are one line and non-zero."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from onthefly import Trainer
from onthefly.cli.main import main
from onthefly.cli.watch import WatchState, sparkline
from onthefly.demos.boring import boring_setup
from onthefly.v1 import control_pb2, telemetry_pb2
from support import wait_until


@pytest.fixture
def run(live_run):
    model, opt, loss, loader = boring_setup(n=2048)
    return live_run(Trainer("cli", "one", max_epochs=100, port=0, start_paused=True, verbose=False),
                    model, opt, loss, loader, test_loader=loader)


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ps_status_and_steering(run, capsys):
    code, out, _ = _cli(capsys, "ps")
    assert code == 0 and "cli/one" in out and run.trainer.address in out
    code, out, _ = _cli(capsys, "ps", "--json", "--tokens")
    assert json.loads(out.splitlines()[0])["token"] == run.trainer.token
    code, out, _ = _cli(capsys, "step", "4")
    assert code == 0 and "step: applied at step 0" in out
    wait_until(lambda: run.trainer.run.step == 4 and run.trainer.run.control.state.name == "PAUSED")
    code, out, _ = _cli(capsys, "status")
    assert code == 0 and "PAUSED" in out and "step 4/" in out and "lr=0.05" in out
    code, out, _ = _cli(capsys, "set", "lr=0.01", "momentum=0.5")
    assert code == 0 and "applied at step 4" in out and "lr=0.01" in out
    code, out, _ = _cli(capsys, "test", "--stay-paused")
    assert code == 0 and "test loss" in out and "2048 samples" in out
    code, out, _ = _cli(capsys, "resume")
    assert code == 0 and "resume: applied at step 4" in out
    code, out, _ = _cli(capsys, "pause")
    assert code == 0 and "pause: applied at step" in out
    code, out, _ = _cli(capsys, "stop", "--skip-test")
    assert code == 0
    run.join()


def test_a_run_that_is_gone_is_one_clear_error(run, capsys):
    run.client.control.Step(control_pb2.StepRequest(steps=2))
    wait_until(lambda: run.trainer.run.step == 2)
    run.client.control.Stop(control_pb2.StopRequest(skip_test=True))
    run.join()  # the stream ends with the run, so tail returns
    # The run is over: tail through its (now gone) address fails with one clear line.
    code, out, err = _cli(capsys, "--address", run.trainer.address, "--token", run.trainer.token, "--timeout", "2",
                          "status")
    assert code == 1 and err.count("\n") == 1 and err.startswith("onthefly: UNAVAILABLE")


def test_tail_json_streams_every_event(live_run, capsys):
    model, opt, loss, loader = boring_setup(n=64)
    run = live_run(Trainer("cli", "tail", max_epochs=1, port=0, start_paused=True, verbose=False),
                   model, opt, loss, loader)
    bus = run.trainer.run.bus

    def resume_once_tail_listens():  # resuming first let a fast run end before tail connected
        wait_until(lambda: bus.subscriber_count > 0, what="tail to subscribe")
        run.client.control.Resume(control_pb2.ResumeRequest())

    resumer = threading.Thread(target=resume_once_tail_listens, daemon=True)
    resumer.start()
    code, out, _ = _cli(capsys, "tail", "--json")
    resumer.join(30)
    run.join()
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert all({"seq", "type", "step"} <= set(r) for r in rows)
    assert rows[-1]["type"] == "lifecycle" and rows[-1]["lifecycle"]["kind"] == "LIFECYCLE_KIND_FINISHED"
    samples = [r for r in rows if r["type"] == "sample_losses"]
    assert sum(len(r["sample_losses"]["indices"]) for r in samples) == 64


def test_an_out_of_range_step_count_is_one_line(run, capsys):
    code, _, err = _cli(capsys, "step", "99999999999999999999")
    assert code == 1 and err.count("\n") == 1 and "steps must be between 1 and" in err


def test_errors_are_one_line_and_non_zero(capsys, runtime_dir):
    code, _, err = _cli(capsys, "status")
    assert code == 1 and err.strip().count("\n") == 0 and "no running trainer" in err
    code, _, err = _cli(capsys, "--address", "127.0.0.1:1", "status")
    assert code == 1 and "needs its token" in err


def test_bad_assignments_and_kinds(run, capsys):
    code, _, err = _cli(capsys, "set", "lr")
    assert code == 1 and "KEY=VALUE" in err
    code, _, err = _cli(capsys, "set", "lr=-3")
    assert code == 1 and err.startswith("onthefly: INVALID_ARGUMENT: lr must be >= 0")
    code, _, err = _cli(capsys, "tail", "--kind", "nope")
    assert code == 1 and "unknown event kind" in err


def test_several_runs_need_a_name(run, live_run, capsys):
    model, opt, loss, loader = boring_setup(n=32)
    live_run(Trainer("cli", "two", max_steps=1, port=0, start_paused=True, verbose=False), model, opt, loss, loader)
    code, _, err = _cli(capsys, "status")
    assert code == 1 and "2 trainers are running" in err and "--run" in err
    code, out, _ = _cli(capsys, "--run", "two", "status")
    assert code == 0 and "cli/two" in out


def test_console_script_entry_point(run):
    exe = [sys.executable, "-m", "onthefly.cli.main", "status"]
    done = subprocess.run(exe, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "cli/one" in done.stdout


def test_watch_view_renders_progress_sparkline_and_drops():
    state = WatchState(title="p/r", total_steps=10)
    frame = telemetry_pb2.SubscribeResponse(dropped_at_source=3)
    for step, loss in enumerate([1.0, 0.5, 0.25], start=1):
        e = frame.events.add(seq=step, step=step)
        e.step_metrics.loss, e.step_metrics.lr, e.step_metrics.samples_per_second = loss, 0.1, 1000
    frame.gap.first_seq, frame.gap.last_seq = 4, 5
    state.update(frame)
    text = state.render(80)
    assert "step 3/10" in text and "30.0%" in text and "dropped at source 3" in text and "missed (gaps) 2" in text
    assert sparkline([1.0, 0.5, 0.25], 10) == "█▃▁"

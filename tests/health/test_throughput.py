"""Throughput: a slow input pipeline is reported with its share of each step; a fast one is not."""

from __future__ import annotations

from torch.utils.data import DataLoader

from onthefly.demos.boring import boring_setup
from support import wait_until


def _after_steps(live, hc, steps):
    hc.step_and_wait(live, steps)
    # Step timings reach the monitor through the bus's pump thread: wait until all of them did.
    return wait_until(lambda: (f := hc.run_checks(live, "throughput")) and f[0].evidence.get("steps") == steps and f,
                      what="the step timings to reach the monitor")


def test_quiet_on_an_in_memory_dataset(live_run, hc):
    model, opt, loss, loader = boring_setup()
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    assert "no steps measured yet" in hc.run_checks(live, "throughput")[0].message
    findings = _after_steps(live, hc, 6)
    assert hc.problems(findings) == []
    assert findings[0].evidence["samples_per_second"] > 0 and findings[0].evidence["num_workers"] == 0
    hc.stop(live)


def test_fires_when_loading_dominates_the_step(live_run, hc):
    model, opt, loss, _ = boring_setup()
    loader = DataLoader(hc.SlowDataset(), batch_size=16, shuffle=True)
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    bad = hc.problems(_after_steps(live, hc, 4))
    assert len(bad) == 1 and bad[0].subject == "train_loader" and "num_workers" in bad[0].message
    assert bad[0].evidence["data_fraction"] > 0.3 and bad[0].evidence["median_data_ms"] > 16 * 8 * 0.9
    hc.stop(live)


def test_one_throughput_figure_and_the_same_findings_for_the_same_paused_state(live_run, hc):
    from onthefly.v1 import control_pb2, telemetry_pb2

    model, opt, loss, loader = boring_setup()
    live = live_run(hc.paused_trainer(), model, opt, loss, loader)
    first = _after_steps(live, hc, 8)
    again = hc.run_checks(live, "throughput")
    assert again == first  # nothing ran in between: the same findings, evidence and all
    status = live.client.control.GetStatus(control_pb2.GetStatusRequest()).status
    stream = live.client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest(
        kinds=[telemetry_pb2.EVENT_KIND_STEP_METRICS]), timeout=30)
    last = None
    for frame in stream:
        last = frame.events[-1] if frame.events else last
        if last is not None and last.step == 8:
            break
    stream.cancel()
    # The chart plots the step events' figure; the runtime panel shows the status; the check reports its own.
    assert last.step_metrics.samples_per_second == status.samples_per_second == first[0].evidence["samples_per_second"] > 0
    hc.stop(live)

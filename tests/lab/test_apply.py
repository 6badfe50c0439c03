"""Part 2 on a live run through ResolutionService and the CLI: fork, compare, recommend, apply, lineage;
the generalist is untouched until a confirmed apply; clear errors; the run's numbers are unchanged by a fork."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, random_split

from onthefly import Trainer
from onthefly.cli.main import main
from onthefly.demos.boring import BoringModel, boring_dataset
from onthefly.lab.lab import lab_of
from onthefly.lab.routing import load_routed
from onthefly.lab.scoring import state_dict_hash
from onthefly.lab.workbench import workbench_of
from onthefly.runtime.errors import FailedPrecondition
from onthefly.sessions import Sessions
from onthefly.v1 import control_pb2, lab_pb2, lab_pb2_grpc, receipt_pb2
from onthefly.v1 import lab_resolutions_pb2 as pb
from onthefly.v1 import lab_resolutions_pb2_grpc as pb_grpc
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED
FOUR = ["continue", "upweight-hard", "upweight-region", "fork-route"]


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 3))


def _start(live_run, tmp_path, model: nn.Module, steps: int = 30):
    torch.manual_seed(0)
    base = boring_dataset(300, seed=2)
    train, val, test = random_split(base, [0.6, 0.2, 0.2], generator=torch.Generator().manual_seed(0))
    trainer = Trainer("t", "fork", max_steps=100_000, seed=0, port=0, start_paused=True, verbose=False,
                      hooks=[Sessions(store=tmp_path / "store", on_pause=False)])
    run = live_run(trainer, model, torch.optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss(),
                   DataLoader(train, batch_size=20, shuffle=True), val_loader=DataLoader(val, batch_size=64),
                   test_loader=DataLoader(test, batch_size=64))
    run.client.control.Step(control_pb2.StepRequest(steps=steps))
    wait_until(lambda: trainer.run.step == steps and trainer.run.control.state.name == "PAUSED", what="the steps")
    lab = lab_pb2_grpc.LabServiceStub(run.client.channel)
    assert lab.Score(lab_pb2.ScoreRequest()).receipt.status == APPLIED
    assert lab.DiscoverRegions(lab_pb2.DiscoverRegionsRequest(k=4, ratio=1.0, seed=0)).discovery.regions
    return run, pb_grpc.ResolutionServiceStub(run.client.channel), test


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def test_fork_compare_recommend_apply_lineage(live_run, tmp_path):
    model = mlp()
    run, res, test = _start(live_run, tmp_path, model)
    generalist = state_dict_hash(model)

    forked = res.Fork(pb.ForkRequest(region_ids=["r1"], budget=64))
    assert forked.receipt.status == APPLIED and forked.receipt.applied_step == 30 and len(forked.specialist_ids) == 1
    assert state_dict_hash(model) == generalist
    assert _code(lambda: res.Fork(pb.ForkRequest(region_ids=["r1"], budget=0)))[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, details = _code(lambda: res.Fork(pb.ForkRequest(region_ids=["r9"], budget=10)))
    assert code == grpc.StatusCode.NOT_FOUND and "r1" in details
    code, details = _code(lambda: res.Fork(pb.ForkRequest(region_ids=["r1"], budget=10**12)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--budget" in details
    assert _code(lambda: res.Recommend(pb.RecommendRequest()))[0] == grpc.StatusCode.FAILED_PRECONDITION

    compared = res.Compare(pb.CompareRequest(extra=120, resolutions=FOUR, seed=1))
    assert compared.receipt.status == APPLIED
    table = compared.comparison.validation
    assert [r.name for r in table.rows] == FOUR and all(r.sample_gradients == 120 for r in table.rows)
    assert table.slices[0].name == "overall" and any(s.kind == "region" for s in table.slices)
    assert compared.comparison.test.rows and {r.name for r in table.rows if r.routed} == {"fork-route"}
    assert state_dict_hash(model) == generalist  # a comparison changes nothing until applied

    chosen = res.Recommend(pb.RecommendRequest())
    assert chosen.resolution in FOUR and chosen.split == "val" and chosen.reason.endswith(".")
    assert set(chosen.excluded) == set(FOUR) - {chosen.resolution}

    code, details = _code(lambda: res.Apply(pb.ApplyRequest(resolution="upweight-region")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "confirm" in details
    assert state_dict_hash(model) == generalist
    assert _code(lambda: res.Apply(pb.ApplyRequest(resolution="distill", confirm=True)))[0] == grpc.StatusCode.NOT_FOUND

    row = next(r for r in table.rows if r.name == "upweight-region")
    applied = res.Apply(pb.ApplyRequest(resolution="upweight-region", confirm=True))
    assert applied.receipt.status == APPLIED and applied.kind == "weights"
    assert state_dict_hash(model) == row.state_hash == applied.state_hash and applied.replaced_state_hash == generalist
    folder = Path(run.trainer.run.hooks.hooks[0].session.folder.path)
    record = json.loads((folder / applied.record).read_text())
    assert record["resolution"] == "upweight-region" and record["sample_gradients"] == 120

    routed = res.Apply(pb.ApplyRequest(resolution="fork-route", confirm=True))
    assert routed.kind == "routed" and state_dict_hash(model) == row.state_hash  # the generalist keeps its weights
    saved = folder / json.loads((folder / routed.record).read_text())["routed_model"]
    again = load_routed(saved.read_bytes(), mlp)  # torch.load(weights_only=True) + the user's factory
    bench = workbench_of(lab_of(run.trainer.run))
    x = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():
        assert torch.equal(again(x), bench.routed(x))

    graph = res.Lineage(pb.LineageRequest())
    kinds = {n.id: n.kind for n in graph.nodes}
    assert kinds["generalist@30"] == "generalist" and kinds[forked.specialist_ids[0]] == "specialist"
    assert kinds["fork-route@30"] == "resolution" and "applied:upweight-region@30" in kinds
    assert pb.LineageEdge(parent="generalist@30", child=forked.specialist_ids[0]) in graph.edges
    assert graph.dot.startswith("digraph")

    run.client.control.Stop(control_pb2.StopRequest(skip_test=True))
    run.thread.join(60)
    finished = state_dict_hash(model)
    with pytest.raises(FailedPrecondition, match="no more"):  # the server is gone with the run: the Python API
        bench.apply("continue", confirm=True)
    assert state_dict_hash(model) == finished


def test_background_fork_while_the_generalist_trains(live_run, tmp_path):
    model = mlp()
    run, res, _ = _start(live_run, tmp_path, model, steps=20)
    run.client.control.Resume(control_pb2.ResumeRequest())
    forked = res.Fork(pb.ForkRequest(region_ids=["r1"], budget=400, background=True))
    assert forked.receipt.status == APPLIED and forked.background and not forked.specialist_ids
    start = forked.receipt.applied_step
    done = wait_until(lambda: [n for n in res.Lineage(pb.LineageRequest()).nodes if n.kind == "specialist"],
                      what="the background specialist")
    assert done[0].spent == 400 and done[0].step == start
    assert run.trainer.run.step > start  # the generalist kept training meanwhile
    code, details = _code(lambda: res.Compare(pb.CompareRequest(extra=50, resolutions=["magic"])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_fork_and_a_comparison_leave_the_run_bit_identical(live_run, tmp_path):
    """Dropout model: the fork's own RNG use is forked and restored, so the run ends with the same weights."""
    finals = []
    for act in (False, True):
        torch.manual_seed(0)
        model = BoringModel()
        run, res, _ = _start(live_run, tmp_path / str(act), model, steps=10)
        if act:
            assert res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40)).receipt.status == APPLIED
            assert res.Compare(pb.CompareRequest(extra=40, resolutions=["continue", "fork-route"])).receipt.status \
                == APPLIED
        run.client.control.Step(control_pb2.StepRequest(steps=15))
        wait_until(lambda: run.trainer.run.step == 25 and run.trainer.run.control.state.name == "PAUSED",
                   what="15 more steps")
        finals.append({k: v.clone() for k, v in model.state_dict().items()})
        code, _ = _code(lambda: res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40, background=True)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION  # dropout: only with the run paused
        run.client.control.Stop(control_pb2.StopRequest(skip_test=True))
        run.thread.join(60)
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])


def test_cli_fork_compare_recommend_apply_lineage(live_run, tmp_path, capsys):
    model = mlp()
    run, _, _ = _start(live_run, tmp_path, model)

    def cli(*argv):
        code = main(["--address", run.trainer.address, "--token", run.trainer.token, "lab", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = cli("fork", "r1", "--budget", "50")
    assert code == 0 and out.startswith("forked s@30:r1 at step 30")
    code, out, _ = cli("compare", "--extra", "60", "--resolutions", *FOUR)
    assert code == 0 and "each at 60 extra sample-gradients" in out and "fork-route" in out and "*" in out
    code, out, _ = cli("compare", "--latest", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["resolution"] for r in rows if r.get("split") == "val"} == set(FOUR)
    assert all(r["sample_gradients"] == 60 for r in rows if "split" in r)
    code, out, _ = cli("recommend", "--json")
    chosen = json.loads(out)["resolution"]
    assert chosen in FOUR
    code, out, err = cli("apply", chosen)
    assert code != 0 and "confirm" in (out + err)
    code, out, _ = cli("apply", chosen, "--yes", "--json")
    assert code == 0 and json.loads(out)["resolution"] == chosen
    code, out, _ = cli("lineage")
    assert code == 0 and out.startswith("generalist@30") and "  s@30:r1" in out
    code, out, _ = cli("lineage", "--json")
    assert any(json.loads(line)["kind"] == "specialist" for line in out.splitlines())


def test_fork_later_from_a_session_checkpoint(live_run, tmp_path):
    from onthefly.sessions import sessions_of
    from onthefly.sessions.commands import CreateCheckpoint

    model = mlp()
    run, res, _ = _start(live_run, tmp_path, model, steps=20)
    at_20 = state_dict_hash(model)
    pending = run.trainer.run.control.submit(CreateCheckpoint(sessions_of(run.trainer.run)))
    assert pending.wait(30).status == APPLIED
    checkpoint_id = pending.result.checkpoint_id
    run.client.control.Step(control_pb2.StepRequest(steps=10))
    wait_until(lambda: run.trainer.run.step == 30 and run.trainer.run.control.state.name == "PAUSED", what="10 steps")
    at_30 = state_dict_hash(model)

    forked = res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40, checkpoint_id=checkpoint_id))
    assert forked.receipt.status == APPLIED and forked.specialist_ids == ["s@20:r1"]
    nodes = {n.id: n for n in res.Lineage(pb.LineageRequest()).nodes}
    assert nodes["generalist@20"].state_hash == at_20 and nodes["s@20:r1"].parents == ["generalist@20"]
    assert state_dict_hash(model) == at_30  # the live generalist was not read or changed
    code, details = _code(lambda: res.Fork(pb.ForkRequest(region_ids=["r1"], budget=40, checkpoint_id="nope")))
    assert code == grpc.StatusCode.NOT_FOUND and checkpoint_id in details

"""Sessions under Lightning: checkpoints and export through the RPC and the CLI hold the module's
live weights; Lightning's own checkpoints keep working beside them; live import/restore is refused
with what to do instead, and the exported bundle continues bit-identically under the native Trainer."""

from __future__ import annotations

import grpc
import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from onthefly.cli.main import main
from onthefly.demos.boring import boring_dataset
from onthefly.integrations.lightning.demo import LitBoring
from onthefly.sessions import Sessions, sessions_of
from onthefly.sessions.session import read_bundle
from onthefly.v1 import control_pb2, receipt_pb2, run_pb2, sessions_pb2, sessions_pb2_grpc
from support import wait_until

APPLIED = receipt_pb2.RECEIPT_STATUS_APPLIED


def _weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _paused_at(run, step: int) -> bool:
    status = run.client.control.GetStatus(control_pb2.GetStatusRequest()).status
    return status.state == run_pb2.RUN_STATE_PAUSED and status.step == step


def _cli(capsys, run, *argv):
    code = main(["--address", run.callback.address, "--token", run.callback.token, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_checkpoint_and_export_through_rpc_and_cli_hold_the_live_weights(lit_run, tmp_path, capsys):
    L.seed_everything(0)
    model = LitBoring()
    train = DataLoader(boring_dataset(256), batch_size=16, shuffle=True)
    native = ModelCheckpoint(dirpath=tmp_path / "lightning-ckpts", every_n_train_steps=2, save_top_k=-1,
                             save_last=True)
    # pause_settle=0: each pause is checkpointed as soon as it is acknowledged (by default only a pause that
    # lasts half a second is), so the ring below does not depend on how fast this test sends its requests.
    run = lit_run(model, train, trainer_kwargs={"max_epochs": 100, "enable_checkpointing": True,
                                                "callbacks": [native]}, sessions=Sessions(pause_settle=0))
    stub = sessions_pb2_grpc.SessionsServiceStub(run.client.channel)

    assert run.client.control.Step(control_pb2.StepRequest(steps=5)).receipt.status == APPLIED
    wait_until(lambda: _paused_at(run, 5), what="5 steps, then paused")
    live = _weights(model)
    opt_live = run.trainer.optimizers[0].state_dict()

    made = stub.CreateCheckpoint(sessions_pb2.CreateCheckpointRequest(label="five"))
    assert made.receipt.status == APPLIED and made.receipt.applied_step == 5
    assert made.checkpoint.step == 5 and made.checkpoint.batch_in_epoch == 5 and made.checkpoint.label == "five"
    listed = stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest()).checkpoints
    # The ring: one checkpoint per pause (started paused at 0, paused again at 5), then the requested one.
    assert [(c.step, c.label) for c in listed] == [(0, ""), (5, ""), (5, "five")]
    assert listed[-1].checkpoint_id == made.checkpoint.checkpoint_id

    bundle_path = tmp_path / "lit.onthefly"
    exported = stub.ExportSession(sessions_pb2.ExportSessionRequest(path=str(bundle_path)))
    assert exported.receipt.status == APPLIED and exported.bundle.step == 5 and bundle_path.exists()

    imported = read_bundle(bundle_path)  # every checksum verified, tensors loaded with weights_only=True
    try:
        assert imported.checkpoint.info.step == 5 and imported.checkpoint.doc["position"]["epoch"] == 0
        assert _same(imported.state["model"], live)  # the bundle holds the module's live weights
        momentum = imported.state["optimizer"]["state"]
        assert momentum.keys() == opt_live["state"].keys() and all(
            torch.equal(momentum[k]["momentum_buffer"], opt_live["state"][k]["momentum_buffer"]) for k in momentum)
        assert imported.state["optimizer"]["param_groups"][0]["lr"] == 0.05
        # The ring, then the state at export.
        assert [(c["step"], c["label"]) for c in imported.bundle.checkpoints] == [(0, ""), (5, ""), (5, "five"), (5, "")]
        five = imported.bundle.checkpoint(imported.bundle.checkpoints[2]["dir"])
        assert _same(five.state()["model"], live)
        assert not _same(imported.bundle.checkpoint(imported.bundle.checkpoints[0]["dir"]).state()["model"], live)
        assert len(imported.state["metrics"]["loss"]) == 5  # the telemetry history came along
    finally:
        imported.bundle.close()

    # The same through the CLI.
    code, out, _ = _cli(capsys, run, "checkpoint", "--label", "cli")
    assert code == 0 and "at step 5 (epoch 0, batch 5)" in out
    code, out, _ = _cli(capsys, run, "checkpoints")
    assert code == 0 and "'five'" in out and "'cli'" in out
    cli_path = tmp_path / "cli.onthefly"
    code, out, _ = _cli(capsys, run, "export", str(cli_path))
    assert code == 0 and f"exported step 5 to {cli_path}" in out
    with read_bundle(cli_path).bundle as bundle:
        assert _same(bundle.checkpoint(bundle.resume_dir).state()["model"], live)

    # Lightning owns the loop's position: a live import or restore is refused, naming what to do instead.
    for call in (lambda: stub.ImportSession(sessions_pb2.ImportSessionRequest(path=str(bundle_path))),
                 lambda: stub.RestoreCheckpoint(sessions_pb2.RestoreCheckpointRequest(
                     checkpoint_id=made.checkpoint.checkpoint_id))):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "Lightning" in refused.value.details() and "resume_from" in refused.value.details()
    assert _paused_at(run, 5) and _same(_weights(model), live)  # nothing moved

    # Train on; Lightning's own checkpoints were written all along and agree with the session's export.
    run.client.control.Step(control_pb2.StepRequest(steps=3))
    wait_until(lambda: _paused_at(run, 8), what="3 more steps")
    assert run.client.control.Stop(control_pb2.StopRequest()).receipt.status == APPLIED
    run.join()
    final = _weights(model)
    info = sessions_of(run.callback).export(tmp_path / "final.onthefly")  # the Python call, after fit
    assert info.step == 8
    with read_bundle(info.path).bundle as bundle:
        assert _same(bundle.checkpoint(bundle.resume_dir).state()["model"], final)
    ckpts = sorted(p.name for p in (tmp_path / "lightning-ckpts").iterdir())
    assert {"last.ckpt", "epoch=0-step=4.ckpt", "epoch=0-step=8.ckpt"} <= set(ckpts), ckpts
    native_state = torch.load(tmp_path / "lightning-ckpts" / "epoch=0-step=8.ckpt", weights_only=True)
    assert native_state["global_step"] == 8 and _same(native_state["state_dict"], final)
    at_four = torch.load(tmp_path / "lightning-ckpts" / "epoch=0-step=4.ckpt", weights_only=True)
    assert not _same(at_four["state_dict"], final)


def test_a_lightning_run_exported_mid_epoch_continues_bit_identically_under_the_native_trainer(lit_run, tmp_path):
    """21 Lightning steps (epoch 1, batch 5), export, then 15 more under onthefly.Trainer(resume_from=...):
    the weights equal 36 uninterrupted Lightning steps exactly (dropout and shuffling included)."""
    from torch import nn

    from onthefly import Trainer
    from onthefly.integrations.lightning.demo import quiet_trainer_kwargs

    def loader():
        return DataLoader(boring_dataset(256), batch_size=16, shuffle=True)

    L.seed_everything(0)
    reference = LitBoring()
    L.Trainer(**quiet_trainer_kwargs(str(tmp_path / "ref"), max_steps=36)).fit(reference, loader())

    L.seed_everything(0)
    model = LitBoring()
    run = lit_run(model, loader(), trainer_kwargs={"max_steps": 36})
    run.client.control.Step(control_pb2.StepRequest(steps=21))
    wait_until(lambda: _paused_at(run, 21), what="21 steps, then paused")
    bundle = tmp_path / "mid-epoch.onthefly"
    stub = sessions_pb2_grpc.SessionsServiceStub(run.client.channel)
    exported = stub.ExportSession(sessions_pb2.ExportSessionRequest(path=str(bundle)))
    assert exported.receipt.status == APPLIED and exported.bundle.step == 21
    run.client.control.Stop(control_pb2.StopRequest())
    run.join()
    assert not _same(_weights(model), _weights(reference))

    torch.manual_seed(123)  # whatever the process did since: the bundle carries every RNG state
    fresh = LitBoring()
    optimizer = torch.optim.SGD(fresh.parameters(), lr=0.05, momentum=0.9)
    result = Trainer("lit", "continued", max_steps=36, serve=False, verbose=False).fit(
        fresh, optimizer, nn.CrossEntropyLoss(), loader(), resume_from=bundle)
    assert result.steps == 36 and result.epochs == 2
    assert _same(_weights(fresh), _weights(reference))


def test_a_configured_session_checkpoints_on_schedule_and_sessions_can_be_off(lit_run, store_dir):
    L.seed_everything(0)
    train = DataLoader(boring_dataset(256), batch_size=16, shuffle=True)
    run = lit_run(LitBoring(), train, trainer_kwargs={"max_epochs": 100},
                  sessions=Sessions(every_n_steps=2, keep=2, on_pause=False))
    run.client.control.Step(control_pb2.StepRequest(steps=7))
    wait_until(lambda: _paused_at(run, 7), what="7 steps, then paused")
    stub = sessions_pb2_grpc.SessionsServiceStub(run.client.channel)
    listed = stub.ListCheckpoints(sessions_pb2.ListCheckpointsRequest())
    assert [c.step for c in listed.checkpoints] == [4, 6] and listed.keep == 2  # every 2 steps, the 2 newest
    assert stub.GetSession(sessions_pb2.GetSessionRequest()).session.folder.startswith(str(store_dir))
    run.client.control.Stop(control_pb2.StopRequest())
    run.join()

    off = lit_run(LitBoring(), train, trainer_kwargs={"max_epochs": 100}, sessions=False)
    with pytest.raises(grpc.RpcError) as refused:
        sessions_pb2_grpc.SessionsServiceStub(off.client.channel).CreateCheckpoint(
            sessions_pb2.CreateCheckpointRequest())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    off.client.control.Stop(control_pb2.StopRequest())
    off.join()

"""Server mode: `onthefly serve`, per-user tokens stored hashed, login in a 0600 file, owner-prefix writes,
shared reads, and the same Experiment API over a real TrackingService on port 0."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import grpc
import pytest

from onthefly.cli.main import main
from onthefly.tracking import Experiment, NotFound, PermissionDenied, Status, Unauthenticated
from onthefly.tracking.credentials import credentials_path
from onthefly.v1 import tracking_pb2, tracking_pb2_grpc


def _login(capsys, address: str, token: str) -> None:
    assert main(["login", "--server", address, "--token", token]) == 0
    capsys.readouterr()


def test_token_create_stores_only_a_hash_and_login_keeps_it_in_a_0600_file(tmp_path, capsys):
    from onthefly.tracking.server.host import start_tracking_server

    root = tmp_path / "srv"
    assert main(["token", "create", "--user", "dana", "--root", str(root), "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    token = created["token"]
    token_file = root / ".onthefly-tokens.json"
    assert token not in token_file.read_text() and "dana" in token_file.read_text()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert main(["token", "list", "--root", str(root)]) == 0
    assert created["id"] in capsys.readouterr().out
    assert main(["token", "create", "--user", "no spaces", "--root", str(root)]) == 1
    assert "user name 'no spaces' is not allowed" in capsys.readouterr().err

    srv = start_tracking_server(root, port=0, durable=False)
    try:
        assert main(["login", "--server", srv.address, "--token", token]) == 0
        assert "as dana" in capsys.readouterr().out
        path = credentials_path()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and token in path.read_text()
        with Experiment(prefix="proj/run", dash_url=True).run as exp:  # the server and user of the login
            exp.metrics("m").log(v=1)
        assert exp.prefix == "dana/proj/run" and exp.status is Status.COMPLETED
        assert main(["login", "--server", srv.address, "--token", "otf_wrong"]) == 1
        assert "unknown or revoked token" in capsys.readouterr().err
        assert main(["token", "revoke", "--user", "dana", "--root", str(root)]) == 0
        with pytest.raises(Unauthenticated, match="unknown or revoked token"):
            Experiment(prefix="dana/proj/again", dash_url=srv.address, token=token).run.start()
    finally:
        srv.stop(grace=0.5)


def test_the_same_api_works_against_a_server(server, tmp_path):
    srv, tokens = server
    exp = Experiment(prefix="alice/vision/run-1", dash_url=srv.address, token=tokens["alice"], tags=["t"],
                     readme="remote", flush_interval=600)
    with exp.run:
        exp.log("Training started", level="info", metadata={"gpu": 0})
        exp.params.set(learning_rate=1e-3, model={"depth": 4})
        for step in range(300):
            exp.metrics("train").log(loss=1.0 / (step + 1), step=step, epoch=step // 100)
        exp.tracks("robot/position").append(x=0.1, _ts=1.0)
        exp.tracks("robot/position").append(y=0.2, _ts=1.0)
        exp.tracks("robot/position").append(x=0.5, _ts=2.0)
        exp.files("frames").save_text("hello", to="a.txt")
        source = tmp_path / "weights.bin"
        source.write_bytes(b"w" * 3_000_000)  # several upload chunks
        exp.files("ckpt").save(source)
        source.unlink()
        assert exp.params.get(flatten=False) == {"learning_rate": 1e-3, "model": {"depth": 4}}
        page = exp.metrics("train").read(start_index=10, limit=5)
        assert [r["data"]["step"] for r in page["data"]] == [10, 11, 12, 13, 14] and page["totalDataPoints"] == 300
        assert exp.metrics("train").summary()["loss"]["max"] == 1.0
        assert exp.tracks("robot/position").read(start_timestamp=0, end_timestamp=1.5)["entries"] == [
            {"timestamp": 1.0, "x": 0.1, "y": 0.2}]
        assert exp.logs.read()[0]["metadata"] == {"gpu": 0}
        assert exp.files("frames/a.txt").read_text() == "hello"
        assert len(exp.files("ckpt/weights.bin").read_bytes()) == 3_000_000
        exp.files("frames/a.txt").delete()
        assert [f["filename"] for f in exp.files.list()] == ["weights.bin"]
    assert srv.store.get_experiment("alice/vision/run-1").status is Status.COMPLETED
    assert srv.store.get_experiment("alice/vision/run-1").tags == ["t"]
    with pytest.raises(ZeroDivisionError):
        with Experiment(prefix="alice/vision/run-2", dash_url=srv.address, token=tokens["alice"]).run:
            1 / 0
    record = srv.store.get_experiment("alice/vision/run-2")
    assert (record.status, record.error) == (Status.FAILED, "ZeroDivisionError: division by zero")


def test_a_user_writes_only_under_their_own_prefix(server):
    srv, tokens = server
    with pytest.raises(PermissionDenied) as info:
        Experiment(prefix="bob/proj/x", dash_url=srv.address, token=tokens["alice"]).run.start()
    assert str(info.value) == "alice may not write 'bob/proj/x': it belongs to bob; write under 'alice/...' instead"
    assert isinstance(info.value, PermissionError)
    channel = grpc.insecure_channel(srv.address)  # the wire status is PERMISSION_DENIED
    stub = tracking_pb2_grpc.TrackingServiceStub(channel)
    with pytest.raises(grpc.RpcError) as rpc:
        stub.OpenExperiment(tracking_pb2.OpenExperimentRequest(prefix="bob/proj/x"),
                            metadata=(("authorization", f"Bearer {tokens['alice']}"),))
    assert rpc.value.code() is grpc.StatusCode.PERMISSION_DENIED and "belongs to bob" in rpc.value.details()
    with pytest.raises(grpc.RpcError) as rpc:
        stub.WhoAmI(tracking_pb2.WhoAmIRequest())
    assert rpc.value.code() is grpc.StatusCode.UNAUTHENTICATED and "missing token" in rpc.value.details()
    channel.close()


def test_reads_of_shared_experiments_only(server):
    srv, tokens = server
    for name, shared in (("private", False), ("public", True)):
        with Experiment(prefix=f"alice/proj/{name}", dash_url=srv.address, token=tokens["alice"],
                        shared=shared).run as exp:
            exp.metrics("m").log(v=1)
            exp.params.set(lr=0.1)
    bob_reads = Experiment(prefix="bob/proj/mine", dash_url=srv.address, token=tokens["bob"]).run.start()
    from onthefly.tracking.remote import RemoteBackend

    backend = RemoteBackend(srv.address, tokens["bob"])
    try:
        assert [r.prefix for r in backend.list_experiments()] == ["alice/proj/public", "bob/proj/mine"]
        assert backend.get_params("alice/proj/public") == {"lr": 0.1}
        with pytest.raises(NotFound, match="no experiment 'alice/proj/private' that bob may read"):
            backend.get_params("alice/proj/private")
        with pytest.raises(PermissionDenied, match="bob may not write 'alice/proj/public'"):
            backend.set_params("alice/proj/public", {"lr": 1.0})
        with pytest.raises(NotFound):
            backend.get_experiment("bob/proj/none")
    finally:
        backend.close()
        bob_reads.run.complete()


def test_onthefly_serve_runs_until_sigterm(tmp_path):
    root = tmp_path / "served"
    proc = subprocess.Popen([sys.executable, "-c", "from onthefly.cli.main import main; raise SystemExit(main())",
                             "serve", "--root", str(root), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "tracking server for" in first, proc.stderr.read() if proc.poll() is not None else first
        address = first.rsplit(" on ", 1)[1].strip()
        assert "no tokens yet" in proc.stdout.readline()
        from onthefly.tracking.server.tokens import TokenStore

        token = TokenStore(root).create("erin")[1]  # created while it runs: takes effect at once
        with Experiment(prefix="erin/p/r", dash_url=address, token=token).run as exp:
            exp.metrics("m").log(v=1)
        proc.terminate()
        assert proc.wait(30) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    parts = list((root / "erin/p/r/metrics/m").glob("part-*.parquet"))
    assert parts, "the server turned the journal into a Parquet part"


def test_a_token_without_login_names_the_owner_and_losses_reach_the_history(server):
    srv, tokens = server
    exp = Experiment(prefix="proj/run", dash_url=srv.address, token=tokens["bob"])  # no `onthefly login`
    assert exp.prefix == "bob/proj/run"  # the server's WhoAmI, not $USER
    with exp.run:
        exp.metrics("m").log(v=1.0)
        exp.flush()
        with pytest.warns(RuntimeWarning, match="refused"):
            exp.metrics("m").log(v="text")
            exp.flush()
    record = srv.store.get_experiment("bob/proj/run")
    assert record.status is Status.COMPLETED
    assert "writer: 1 rows refused" in record.history[-1]["note"] and "'v'" in record.history[-1]["note"]


def test_dxp_with_only_a_token_writes_under_the_tokens_user(server, tmp_path):
    srv, tokens = server
    script = ("from onthefly.tracking.auto_start import dxp\n"
              "with dxp.run:\n"
              "    dxp.metrics('train').log(loss=0.5, step=0)\n"
              "print(dxp.prefix)\n")
    env = {**os.environ, "ONTHEFLY_DASH_URL": srv.address, "ONTHEFLY_TOKEN": tokens["bob"],
           "ONTHEFLY_USER": "carol", "USER": "carol"}  # no `onthefly login`: the config folder is empty
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    prefix = out.stdout.strip()
    assert prefix.startswith(f"bob/{tmp_path.name}/")  # the server's WhoAmI, not $USER
    assert srv.store.get_experiment(prefix).status is Status.COMPLETED
    assert srv.store.read(prefix, "metric", "train")[0].column("loss").to_pylist() == [0.5]


def test_trainer_tracks_into_a_server(server):
    from onthefly import Trainer
    from onthefly.demos.boring import boring_setup

    srv, tokens = server
    model, opt, loss_fn, loader = boring_setup(seed=0, n=64, batch_size=16)
    trainer = Trainer("remote", "tiny", max_steps=4, serve=False, verbose=False,
                      track={"dash_url": srv.address, "token": tokens["alice"]})
    trainer.fit(model, opt, loss_fn, loader)
    prefix = trainer.experiment.prefix
    assert prefix == f"alice/{trainer.run.identity.run_id}"
    assert srv.store.get_experiment(prefix).status is Status.COMPLETED
    assert srv.store.read(prefix, "metric", "train")[0].column("step").to_pylist() == [1, 2, 3, 4]


def test_reads_page_through_the_server(server, monkeypatch, tmp_path, capsys):
    import onthefly.tracking.server.handler as handler

    monkeypatch.setattr(handler, "PAGE_ROWS", 7)  # many pages from a few rows
    srv, tokens = server
    with Experiment(prefix="alice/paging/run", dash_url=srv.address, token=tokens["alice"]).run as exp:
        for i in range(50):
            exp.metrics("m").log(i=i)
        assert exp.metrics("m").read_table().column("i").to_pylist() == list(range(50))
        page = exp.metrics("m").read(start_index=10, limit=20)
        assert [r["data"]["i"] for r in page["data"]] == list(range(10, 30)) and page["totalDataPoints"] == 50
    monkeypatch.setenv("ONTHEFLY_TOKEN", tokens["alice"])
    out = tmp_path / "m.csv"
    assert main(["experiments", "export", "alice/paging/run", "--metric", "m", "--out", str(out),
                 "--server", srv.address]) == 0
    assert "wrote 50 rows" in capsys.readouterr().out and len(out.read_text().splitlines()) == 51

"""Server mode holds several users' data: files only the server's user reads, the same answer for another
user's unshared experiment as for a missing one, an upload size limit and a per-user quota, and an
upload longer than it announced refused at once."""

from __future__ import annotations

import hashlib
import stat

import grpc
import pytest

from onthefly.tracking import Experiment
from onthefly.tracking.server.host import start_tracking_server
from onthefly.tracking.server.tokens import TokenStore
from onthefly.v1 import tracking_pb2 as pb
from onthefly.v1 import tracking_pb2_grpc


@pytest.fixture
def limited(tmp_path):
    root = tmp_path / "server-store"
    srv = start_tracking_server(root, port=0, durable=False, max_upload_bytes=1 << 20, quota_bytes=3 << 19)
    tokens = {user: TokenStore(root).create(user)[1] for user in ("alice", "bob")}
    channel = grpc.insecure_channel(srv.address)
    yield srv, tokens, tracking_pb2_grpc.TrackingServiceStub(channel)
    channel.close()
    srv.stop(grace=0.5)


def _auth(token):
    return [("authorization", f"Bearer {token}")]


def _upload(stub, token, prefix, path, data, announced=None, chunks=None):
    header = pb.FileHeader(prefix=prefix, path=path, size=len(data) if announced is None else announced,
                           sha256=hashlib.sha256(data).hexdigest())

    def messages():
        yield pb.UploadFileRequest(header=header)
        for chunk in chunks if chunks is not None else [data[i:i + (1 << 19)] for i in range(0, len(data), 1 << 19)]:
            yield pb.UploadFileRequest(chunk=chunk)

    return stub.UploadFile(messages(), metadata=_auth(token), timeout=60)


def test_store_files_are_private_to_the_servers_user(limited):
    srv, tokens, _ = limited
    with Experiment(prefix="alice/proj/a", dash_url=srv.address, token=tokens["alice"]).run as exp:
        exp.metrics("m").log(v=1.0)
        exp.params.set(lr=0.1)
    srv.store.close()
    for path in [srv.store.root, *srv.store.root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is mode {mode:o}"


def test_another_users_private_experiment_answers_like_a_missing_one(limited):
    srv, tokens, stub = limited
    with Experiment(prefix="alice/proj/private", dash_url=srv.address, token=tokens["alice"]).run as exp:
        exp.metrics("m").log(v=1.0)

    def answer(prefix):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetExperiment(pb.GetExperimentRequest(prefix=prefix), metadata=_auth(tokens["bob"]), timeout=30)
        return err.value.code(), err.value.details().replace(prefix, "<prefix>")

    assert answer("alice/proj/private") == answer("alice/proj/absent")
    assert answer("alice/proj/private")[0] is grpc.StatusCode.NOT_FOUND


def test_upload_size_limit_and_quota(limited):
    srv, tokens, stub = limited
    with Experiment(prefix="alice/proj/files", dash_url=srv.address, token=tokens["alice"]).run:
        pass
    prefix = "alice/proj/files"
    with pytest.raises(grpc.RpcError) as err:
        _upload(stub, tokens["alice"], prefix, "/big.bin", b"x" * ((1 << 20) + 1))
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 1048576 bytes" in err.value.details()
    _upload(stub, tokens["alice"], prefix, "/a.bin", b"a" * (1 << 20))  # at the limit: stored
    with pytest.raises(grpc.RpcError) as err:
        _upload(stub, tokens["alice"], prefix, "/b.bin", b"b" * (1 << 20))  # 2 MiB would pass the 1.5 MiB quota
    assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and "quota" in err.value.details()


def test_an_upload_longer_than_announced_is_refused_at_once(limited):
    srv, tokens, stub = limited
    with Experiment(prefix="alice/proj/liar", dash_url=srv.address, token=tokens["alice"]).run:
        pass
    sent = []

    def endless():
        for i in range(2000):  # 1 GB if it were read to the end
            sent.append(i)
            yield b"z" * (1 << 19)

    with pytest.raises(grpc.RpcError) as err:
        _upload(stub, tokens["alice"], "alice/proj/liar", "/liar.bin", b"0123456789", chunks=endless())
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "more than the 10 bytes" in err.value.details()
    assert len(sent) < 200  # refused after the first chunk, not after a gigabyte

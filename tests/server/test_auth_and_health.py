from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from onthefly import Trainer
from onthefly.client import RunClient
from onthefly.demos.boring import boring_setup
from onthefly.server.auth import bearer
from onthefly.v1 import control_pb2, telemetry_pb2


@pytest.fixture
def paused_run(live_run):
    model, opt, loss, loader = boring_setup(n=32)
    return live_run(Trainer("t", "auth", max_steps=2, port=0, start_paused=True, verbose=False),
                    model, opt, loss, loader)


def test_missing_or_wrong_token_is_unauthenticated(paused_run):
    address = paused_run.trainer.address
    with grpc.insecure_channel(address) as channel:
        from onthefly.v1 import control_pb2_grpc

        stub = control_pb2_grpc.ControlServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetStatus(control_pb2.GetStatusRequest())
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in missing.value.details()
        with pytest.raises(grpc.RpcError) as wrong:
            stub.Pause(control_pb2.PauseRequest(), metadata=[bearer("not-the-token")])
        assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with RunClient(address, "wrong") as client, pytest.raises(grpc.RpcError) as stream:
        next(client.telemetry.Subscribe(telemetry_pb2.SubscribeRequest()))
    assert stream.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Nothing was applied by the refused calls.
    status = paused_run.client.control.GetStatus(control_pb2.GetStatusRequest()).status
    assert status.state == 3  # RUN_STATE_PAUSED, still at the start
    assert status.step == 0


def test_health_is_open_and_reflection_needs_the_token(paused_run):
    address = paused_run.trainer.address
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        assert health.Check(health_pb2.HealthCheckRequest(service="onthefly.v1.ControlService")).status == \
            health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as denied:
            list(reflect.ServerReflectionInfo(iter([request])))
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = list(reflect.ServerReflectionInfo(iter([request]), metadata=[bearer(paused_run.trainer.token)]))
        names = {s.name for s in answers[0].list_services_response.service}
        assert {"onthefly.v1.ControlService", "onthefly.v1.TelemetryService", "grpc.health.v1.Health"} <= names


def test_discovery_file_is_private_and_removed_at_the_end(paused_run, runtime_dir):
    import json
    import stat

    files = list(runtime_dir.glob("*.json"))
    assert len(files) == 1
    info = json.loads(files[0].read_text())
    assert info["port"] == int(paused_run.trainer.address.rsplit(":", 1)[1])
    assert info["token"] == paused_run.trainer.token
    assert {"pid", "project", "run_name", "run_id"} <= set(info)
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    paused_run.client.control.Resume(control_pb2.ResumeRequest())
    paused_run.join()
    assert list(runtime_dir.glob("*.json")) == []


def test_server_listens_on_loopback_only_and_never_shares_a_port(live_run):
    import socket

    first = live_run(Trainer("t", "a", max_steps=1, port=0, start_paused=True, verbose=False), *boring_setup(n=16))
    port = int(first.trainer.address.rsplit(":", 1)[1])
    second = live_run(Trainer("t", "b", max_steps=1, port=port, start_paused=True, verbose=False), *boring_setup(n=16))
    assert second.trainer.server.port != port  # taken: it fell back to another free port
    with socket.socket() as s:  # not reachable through a non-loopback address of this host
        s.settimeout(1)
        try:
            external = socket.gethostbyname(socket.gethostname())
        except OSError:
            external = None
        if external and not external.startswith("127."):
            assert s.connect_ex((external, port)) != 0


def test_a_reflection_only_client_lists_and_calls_with_the_token(paused_run):
    """What grpcurl does: no generated code, only what reflection serves. It resolves the service and
    its messages (with their imports) from the server, builds the request from those descriptors and
    calls the method with the token."""
    from google.protobuf import descriptor_pool, message_factory
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with RunClient(paused_run.trainer.address, paused_run.trainer.token) as client:
        database = ProtoReflectionDescriptorDatabase(client.channel)
        assert "onthefly.v1.ControlService" in database.get_services()
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindServiceByName("onthefly.v1.ControlService").FindMethodByName("GetStatus")
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        call = client.channel.unary_unary("/onthefly.v1.ControlService/GetStatus",
                                          request_serializer=request_cls.SerializeToString,
                                          response_deserializer=response_cls.FromString)
        answer = call(request_cls(), timeout=10)
    # Read by field name from the reflected descriptors, as grpcurl prints them.
    state = answer.status.DESCRIPTOR.fields_by_name["state"].enum_type.values_by_number[answer.status.state].name
    assert (state, answer.status.step) == ("RUN_STATE_PAUSED", 0)
    assert answer.status.identity.project == "t"

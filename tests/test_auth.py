"""Token auth with roles taken from the contracts' access options; tokens never reach the logs."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.harness import SERVING, health_status, serve
from visionloop.client import ChannelConfig, DetectorClient, create_channel
from visionloop.loop.v1 import project_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2_grpc as pb_grpc
from visionloop.runtime.interceptors import allowed_roles

ADMIN, ROBOT, NODE = "adm-Secret-7f3a", "rob-Secret-91cc", "nod-Secret-22de"
TOKENS = f"admin={ADMIN},robot={ROBOT},node={NODE}"
REF = pb.ProjectRef(organization="acme", project="weeds")


def call(channel: grpc.Channel, method: str, request: object, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    try:
        getattr(pb_grpc.ProjectServiceStub(channel), method)(request, metadata=metadata, timeout=5)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_roles_and_tokens(tmp_path: Path) -> None:
    with serve("loop", tmp_path, env={"VISIONLOOP_AUTH_TOKENS": TOKENS}) as proc:
        with grpc.insecure_channel(f"127.0.0.1:{proc.ports()['loop']}") as channel:
            create = pb.CreateProjectRequest(project=pb.Project(ref=REF))
            get = pb.GetProjectRequest(ref=REF)

            # Probes need no token.
            assert health_status(channel) == SERVING
            # The broad node role still works, with a warning to give each node kind its own token.
            assert any("deprecated role 'node'" in r["event"] for r in proc.lines if r.get("level") == "warning")

            assert call(channel, "GetProject", get, None) is grpc.StatusCode.UNAUTHENTICATED
            assert call(channel, "GetProject", get, "not-a-token") is grpc.StatusCode.UNAUTHENTICATED
            # CreateProject carries no access option: admin only.
            assert call(channel, "CreateProject", create, ROBOT) is grpc.StatusCode.PERMISSION_DENIED
            assert call(channel, "CreateProject", create, NODE) is grpc.StatusCode.PERMISSION_DENIED
            # Past auth the hub does the work.
            assert call(channel, "CreateProject", create, ADMIN) is grpc.StatusCode.OK
            assert call(channel, "GetProject", get, ROBOT) is grpc.StatusCode.OK

            with pytest.raises(grpc.RpcError) as denied:
                pb_grpc.ProjectServiceStub(channel).CreateProject(
                    create, metadata=[("authorization", f"Bearer {ROBOT}")], timeout=5
                )
            assert "role 'robot' may not call visionloop.loop.v1.ProjectService/CreateProject" in denied.value.details()

        # The channel helper adds the token to every call.
        config = ChannelConfig(target=f"127.0.0.1:{proc.ports()['loop']}", token=ROBOT)
        with create_channel(config) as channel:
            assert call(channel, "GetProject", get, None) is grpc.StatusCode.OK

        proc.terminate()
        proc.proc.wait(timeout=15)
        logs = "".join(proc.raw)
        assert "rpc finished" in logs  # the calls above were logged...
        for secret in (ADMIN, ROBOT, NODE):  # ...without any token
            assert secret not in logs


def test_robot_client_with_token(tmp_path: Path) -> None:
    with serve("detector", tmp_path, env={"VISIONLOOP_AUTH_TOKENS": f"robot={ROBOT}"}) as proc:
        target = f"127.0.0.1:{proc.ports()['detector']}"
        with DetectorClient(target, token=ROBOT) as client:
            assert client.build_info().service == "detector"
        with DetectorClient(target) as client, pytest.raises(grpc.RpcError) as caught:
            client.build_info()
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in caught.value.details()


def test_access_options_come_from_the_contract() -> None:
    assert allowed_roles("/visionloop.detector.v1.DetectorService/Detect") == {"admin", "robot", "node"}
    assert allowed_roles("/visionloop.loop.v1.ProjectService/CreateProject") == {"admin"}
    assert allowed_roles("/visionloop.ops.v1.OpsService/Probe") == {"admin"}
    assert allowed_roles("/grpc.health.v1.Health/Check") is None
    assert allowed_roles("/no.such.Service/Method") == {"admin"}


async def test_aio_channel_helper_sends_the_token(tmp_path: Path) -> None:
    from visionloop.client import create_aio_channel
    from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc

    with serve("converter", tmp_path, env={"VISIONLOOP_AUTH_TOKENS": f"node={NODE}"}) as proc:
        target = f"127.0.0.1:{proc.ports()['converter']}"
        async with create_aio_channel(ChannelConfig(target=target, token=NODE)) as channel:
            info = await ops_service_pb2_grpc.OpsServiceStub(channel).GetBuildInfo(
                ops_service_pb2.GetBuildInfoRequest()
            )
            assert info.service == "converter"
        async with create_aio_channel(ChannelConfig(target=target)) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await ops_service_pb2_grpc.OpsServiceStub(channel).GetBuildInfo(ops_service_pb2.GetBuildInfoRequest())
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED

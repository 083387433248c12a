"""`visionloop up` runs all services; SIGTERM drains them gracefully."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import NOT_SERVING, SERVING, health_status, visionloop
from visionloop.loop.v1 import project_service_pb2, project_service_pb2_grpc
from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc
from visionloop.server.catalog import SERVICES

GRACE = 10.0


def test_up_starts_all_services_and_shuts_down_gracefully(tmp_path: Path) -> None:
    env = {"VISIONLOOP_SHUTDOWN_DRAIN_SECONDS": "1.0", "VISIONLOOP_SHUTDOWN_GRACE_SECONDS": str(GRACE)}
    args = ("up", "--base-port", "0", "--metrics-port", "0")
    with visionloop(*args, tmp_path=tmp_path, env=env, count=len(SERVICES)) as proc:
        ports = proc.ports()
        assert set(ports) == set(SERVICES)
        proc.wait_for("metrics listening")
        channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, port in ports.items()}
        try:
            for channel in channels.values():
                assert health_status(channel) == SERVING
            # The embedded default starts with its project, so nodes and robots can use it at once.
            demo = project_service_pb2.ProjectRef(organization="demo", project="demo")
            stub = project_service_pb2_grpc.ProjectServiceStub(channels["loop"])
            assert stub.GetProject(project_service_pb2.GetProjectRequest(ref=demo), timeout=10).project.ref == demo

            # A health watcher on the hub sees the switch to NOT_SERVING as it happens.
            watch = health_pb2_grpc.HealthStub(channels["loop"]).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            assert next(watch).status == SERVING

            # A slow call is in flight when SIGTERM arrives.
            result: dict[str, object] = {}

            def slow_call() -> None:
                stub = ops_service_pb2_grpc.OpsServiceStub(channels["detector"])
                try:
                    result["response"] = stub.Probe(
                        ops_service_pb2.ProbeRequest(hold=duration_pb2.Duration(seconds=3)), timeout=20
                    )
                except grpc.RpcError as error:
                    result["error"] = error

            caller = threading.Thread(target=slow_call)
            caller.start()
            time.sleep(0.5)
            signalled = time.monotonic()
            proc.terminate()

            assert next(watch).status == NOT_SERVING
            assert health_status(channels["trainer"]) == NOT_SERVING  # during the drain period

            caller.join(timeout=20)
            assert "error" not in result, result
            assert result["response"].held.seconds >= 2  # type: ignore[attr-defined]

            assert proc.proc.wait(timeout=GRACE + 5) == 0
            # Open-ended streams are ended after the drain instead of holding shutdown for the whole grace.
            assert time.monotonic() - signalled < GRACE
            with pytest.raises(grpc.RpcError) as ended:
                next(watch)
            assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
        finally:
            for channel in channels.values():
                channel.close()
        banner = proc.proc.stderr.read() if proc.proc.stderr else ""
        assert "VisionLoop is up" in banner
        for name, port in ports.items():
            assert f"grpc://127.0.0.1:{port}" in banner, (name, banner)
        events = [r["event"] for r in proc.lines]
        assert "shutting down" in events
        assert events.count("stopped") == len(SERVICES)

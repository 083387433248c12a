"""Each service started through the CLI: health, reflection, metrics, JSON logs with the request id."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.harness import SERVING, health_status, serve
from visionloop.ops.v1 import ops_service_pb2, ops_service_pb2_grpc

EXPECTED_SERVICES = {
    "loop": {
        "visionloop.loop.v1.ProjectService",
        "visionloop.loop.v1.ImageService",
        "visionloop.loop.v1.AnnotationService",
        "visionloop.loop.v1.ModelService",
        "visionloop.loop.v1.DeploymentService",
        "visionloop.loop.v1.TrainingService",
        "visionloop.loop.v1.NodeService",
        "visionloop.loop.v1.EventService",
    },
    "detector": {"visionloop.detector.v1.DetectorService"},
    "trainer": {"visionloop.trainer.v1.TrainerService"},
    "converter": {"visionloop.converter.v1.ConverterService"},
    "annotator": {"visionloop.annotator.v1.AnnotatorService"},
}
STANDARD = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "visionloop.ops.v1.OpsService"}


@pytest.mark.parametrize("service", sorted(EXPECTED_SERVICES))
def test_service_starts_and_is_observable(service: str, tmp_path: Path) -> None:
    with serve(service, tmp_path) as proc:
        port = proc.ports()[service]
        metrics_port = proc.metrics_port()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            # Health: overall and per service.
            assert health_status(channel) == SERVING
            for name in EXPECTED_SERVICES[service]:
                assert health_status(channel, name) == SERVING

            # Reflection lists the service's own contracts plus the standard ones.
            listed = set(ProtoReflectionDescriptorDatabase(channel).get_services())
            assert listed == EXPECTED_SERVICES[service] | STANDARD

            # A call with our request id...
            request_id = f"req-{service}-42"
            info = ops_service_pb2_grpc.OpsServiceStub(channel).GetBuildInfo(
                ops_service_pb2.GetBuildInfoRequest(), metadata=[("x-request-id", request_id)], timeout=5
            )
            assert info.service == service
            assert set(info.grpc_services) == EXPECTED_SERVICES[service] | {"visionloop.ops.v1.OpsService"}

        # ...shows up in /metrics...
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert (
            'grpc_server_handled_total{grpc_code="OK",grpc_method="GetBuildInfo",'
            'grpc_service="visionloop.ops.v1.OpsService",grpc_type="unary"} 1.0'
        ) in body
        assert "grpc_server_handling_seconds_bucket" in body
        # CPU by thread pool; asyncio's default pool (the hub opens its database there) is named natively too
        assert 'visionloop_thread_cpu_seconds_total{pool="main"}' in body
        if service == "loop":
            assert 'visionloop_thread_cpu_seconds_total{pool="asyncio"}' in body

        # ...and in a JSON log line carrying the request id.
        records = [r for r in proc.lines if r.get("request_id") == request_id]
        assert records, proc.output()
        assert records[0]["rpc"] == "/visionloop.ops.v1.OpsService/GetBuildInfo"
        assert records[0]["grpc_code"] == "OK"
        assert records[0]["timestamp"].endswith("Z")

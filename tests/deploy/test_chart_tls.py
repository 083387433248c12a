"""The chart's TLS environment run for real: the hub and a detector started with the environment the chart
renders for their containers (mutual TLS, auth), certificates written where the Secret volumes are
mounted; a robot, the node and the `helm test` pod's script connect as they would in the cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy.conftest import CHART, chart_pki, materialize
from tests.deploy.test_chart import SECRET_SAMPLES, by_kind, load_values, pod_specs, render
from tests.harness import SERVING, visionloop
from visionloop.client import ChannelConfig, DetectorClient, create_channel
from visionloop.common.v1 import node_pb2
from visionloop.loop.v1 import node_service_pb2, node_service_pb2_grpc

FREE_PORTS = {"VISIONLOOP_PORT": "0", "VISIONLOOP_METRICS_PORT": "0", "VISIONLOOP_HEALTH_PORT": "0"}


def chart_values() -> dict[str, Any]:
    values = load_values(CHART / "ci" / "minimal-values.yaml")
    values["tls"] = {
        "enabled": True,
        "existingSecret": "visionloop-tls",
        "mutual": True,
        "clientSecret": "visionloop-node-tls",
    }
    values["auth"] = {"enabled": True, "tokenSeed": "a-seed-for-the-tls-test-of-32-characters"}
    values["tests"] = {"enabled": True}
    return values


def wait_for_detector_node(channel: grpc.Channel, within: float = 60.0) -> list[Any]:
    stub = node_service_pb2_grpc.NodeServiceStub(channel)
    deadline = time.monotonic() + within
    while True:
        nodes = stub.ListNodes(node_service_pb2.ListNodesRequest(), timeout=10).nodes
        detectors = [n for n in nodes if n.type == node_pb2.NODE_TYPE_DETECTOR]
        if detectors or time.monotonic() > deadline:
            return detectors
        time.sleep(0.2)


def test_robots_and_nodes_connect_with_the_rendered_tls_environment(tmp_path: Path) -> None:
    documents = render(chart_values())
    specs = pod_specs(documents)
    pki, secrets = chart_pki(tmp_path / "pki")
    tokens = by_kind(documents, "Secret")["vl-visionloop-auth"]["stringData"]
    values = {**SECRET_SAMPLES, **tokens, "database-url": f"sqlite:///{tmp_path / 'hub.db'}"}

    def environment(component: str, **overrides: str) -> dict[str, str]:
        spec = specs[f"vl-visionloop-{component}"]
        env = materialize(spec, spec["containers"][0], tmp_path / "root", secrets, values)
        return {**env, **FREE_PORTS, "VISIONLOOP_DATA_DIR": str(tmp_path / component), **overrides}

    with visionloop("serve", "loop", tmp_path=tmp_path, env=environment("loop")) as hub:
        listening = hub.wait_for("listening")[0]
        assert listening["tls"] == "mutual"
        hub_port = listening["port"]
        detector_env = environment("detector", LOOP_HOST=f"localhost:{hub_port}")
        with visionloop("serve", "detector", tmp_path=tmp_path, env=detector_env) as detector:
            listening = detector.wait_for("listening")[0]
            port, health_port = listening["port"], listening["health_port"]

            # a robot, trusting the chart's CA and presenting a client certificate, by the Service's name
            with DetectorClient(
                f"127.0.0.1:{port}",
                token=tokens["robot-token"],
                root_certificates=pki.ca,
                certificate_chain=pki.client_cert,
                private_key=pki.client_key,
                extra_options=[("grpc.ssl_target_name_override", "vl-visionloop-detector")],
            ) as robot:
                assert robot.build_info().service == "detector"

            # the detector reached the hub with the chart's CA and client certificate: it is registered
            admin = ChannelConfig(
                f"localhost:{hub_port}",
                token=tokens["admin-token"],
                root_certificates=pki.ca,
                certificate_chain=pki.client_cert,
                private_key=pki.client_key,
            )
            with create_channel(admin) as channel:
                assert wait_for_detector_node(channel), detector.output()

            # kubelet's probes: plaintext health on the health port
            with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
                check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert check.status == SERVING

            # `helm test`: the test pod's script, with its environment and mounts
            pod = specs["vl-visionloop-test"]
            container = pod["containers"][0]
            script = container["command"][2]
            test_env = materialize(pod, container, tmp_path / "root", secrets, values)
            targets = [f"localhost:{hub_port}", f"localhost:{port}"]
            result = subprocess.run(
                [sys.executable, "-c", script, *targets], env=test_env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stdout.splitlines() == [f"{target}: SERVING" for target in targets]
            # the same script without the client certificate is refused: it checks what it claims
            refused = subprocess.run(
                [sys.executable, "-c", script, targets[1]],
                env={"TLS_CA": test_env["TLS_CA"]},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode == 1
            assert refused.stdout.startswith(f"{targets[1]}: UNAVAILABLE")

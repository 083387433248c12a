"""The chart run for real with ``podman kube play`` on the images ``deploy/podman/prove`` builds.

The chart is rendered offline (as tests/deploy renders it) with mutual TLS and auth on, the hub on a
PostgreSQL pod (password auth over TLS, the CA checked), then hub, detector, converter and annotator run
as pods on one podman network, each reaching the others by its Service name. From the host, through
ports published on 127.0.0.1 only: every service's health port answers SERVING; each runs as user 10001
on a read-only root filesystem; the detector and the converter registered with the hub over mutual TLS
and the annotator ranks the hub's queue through it; a robot without a client certificate or with a wrong
token is refused; an admin uploads a model and a robot's Detect through the detector answers with it;
the hub's database connections all use TLS; the chart's ``helm test`` pod passes inside the network.

``podman kube play`` is not a kubelet; ``podman_plan`` turns the rendered manifests into what Debian 12's
podman 4.3 runs as Kubernetes would (tests/deploy/test_podman.py checks it without podman):

- Deployments become Pods named after their Service (podman reads no Services; a Pod's name is what
  aardvark-dns answers on the network), one replica each;
- every container port gets a free hostPort on 127.0.0.1: podman publishes a port without one on the
  host at the same number on every address, and every pod's TLS health port is the same number;
- Secrets become podman secrets in the two forms podman 4.3 reads: ``secretKeyRef`` a JSON object of
  base64 values; a secret volume a Secret document whose ``data`` it writes verbatim (not base64
  decoded; every key, ``items`` aside), and whose ``optional`` must be set (podman 4.3 reads it
  unconditionally);
- an emptyDir is a podman volume named after the pod's volume: every pod's ``data`` would be one
  volume, so each gets its pod's name in front;
- annotations longer than 63 characters are left out (podman 4.3 refuses them: ``checksum/secrets``);
- podman runs no gRPC probes (it drops them): the proof calls the health ports itself.

Run by deploy/podman/prove, which builds the images and points podman at its private configuration.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy.test_chart import render
from visionloop.annotator.v1 import annotator_service_pb2, annotator_service_pb2_grpc
from visionloop.client import ChannelConfig, DetectorClient, LoopClient, create_channel
from visionloop.common.v1 import node_pb2
from visionloop.loop.v1 import node_service_pb2, node_service_pb2_grpc
from visionloop.testing.certs import Pki, make_pki
from visionloop.testing.synthetic.models import model_zip

NETWORK = "visionloop-proof"
RELEASE = "vl-visionloop"
POSTGRESQL = "vl-postgresql"
COMPONENTS = ("loop", "detector", "converter", "annotator")
TLS_SECRET = "visionloop-tls"
CLIENT_SECRET = "visionloop-node-tls"
POSTGRESQL_SECRET = "vl-postgresql-credentials"


@dataclass
class Plan:
    """What ``podman kube play`` runs: Pod documents, podman secrets and the ports published on the host."""

    pods: list[dict[str, Any]]
    test_pod: dict[str, Any] | None
    config_maps: list[dict[str, Any]]
    secrets: dict[str, bytes]
    # pod name -> container port name -> host port on 127.0.0.1
    published: dict[str, dict[str, int]] = field(default_factory=dict)


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def secret_data(document: dict[str, Any]) -> dict[str, bytes]:
    """A Secret document's keys and values as the pods read them (``data`` decoded, ``stringData`` over it)."""
    data = {key: base64.b64decode(value) for key, value in (document.get("data") or {}).items()}
    data.update({key: str(value).encode() for key, value in (document.get("stringData") or {}).items()})
    return data


def _secret_uses(spec: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(secret name, "env" or "volume") for every Secret a pod spec reads."""
    for container in spec.get("initContainers", []) + spec["containers"]:
        for variable in container.get("env", []):
            reference = (variable.get("valueFrom") or {}).get("secretKeyRef")
            if reference:
                yield reference["name"], "env"
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                yield source["secretRef"]["name"], "env"
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            yield volume["secret"]["secretName"], "volume"


def _podman_pod(name: str, metadata: dict[str, Any], spec: dict[str, Any], published: dict[str, int]) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    for container in spec["containers"]:
        for port in container.get("ports", []):
            port["hostIP"] = "127.0.0.1"
            port["hostPort"] = published.setdefault(port["name"], free_port())
    renamed = {}
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            volume["secret"].setdefault("optional", False)
        if "emptyDir" in volume:
            renamed[volume["name"]] = volume["name"] = f"{name}-{volume['name']}"
    for container in spec.get("initContainers", []) + spec["containers"]:
        for mount in container.get("volumeMounts", []):
            mount["name"] = renamed.get(mount["name"], mount["name"])
    kept: dict[str, Any] = {"name": name, "labels": metadata.get("labels") or {}}
    # podman 4.3 holds annotation values to the 63 characters of a label value (checksum/secrets is 64).
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if len(str(v)) <= 63}
    if annotations:
        kept["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": kept, "spec": spec}


def podman_plan(
    documents: Sequence[dict[str, Any]],
    extra_secrets: dict[str, dict[str, bytes]],
    extra_pods: Sequence[dict[str, Any]] = (),
) -> Plan:
    """The rendered chart (plus ``extra_pods``) as podman 4.3 runs it; ``extra_secrets``: Secrets the chart
    names but does not make (name -> key -> bytes), such as tls.existingSecret."""
    kinds: dict[str, dict[str, dict[str, Any]]] = {}
    for document in documents:
        kinds.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    services = kinds.get("Service", {})
    data = {name: secret_data(document) for name, document in kinds.get("Secret", {}).items()}
    data.update(extra_secrets)

    plan = Plan(pods=[], test_pod=None, config_maps=list(kinds.get("ConfigMap", {}).values()), secrets={})
    sources: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for name, deployment in kinds.get("Deployment", {}).items():
        if name not in services:
            raise ValueError(f"Deployment {name} has no Service of its name: podman pods are found by their own name")
        if deployment["spec"].get("replicas", 1) != 1:
            raise ValueError(f"Deployment {name}: one replica per Service name under podman")
        template = deployment["spec"]["template"]
        sources.append((name, template["metadata"], template["spec"]))
    sources.extend((pod["metadata"]["name"], pod["metadata"], pod["spec"]) for pod in extra_pods)
    for name, metadata, spec in sources:
        pod = _podman_pod(name, metadata, spec, plan.published.setdefault(name, {}))
        plan.pods.append(pod)
    for name, pod in kinds.get("Pod", {}).items():
        if (pod["metadata"].get("annotations") or {}).get("helm.sh/hook") != "test":
            raise ValueError(f"Pod {name}: the chart's only Pod is its helm test")
        plan.test_pod = _podman_pod(name, pod["metadata"], pod["spec"], plan.published.setdefault(name, {}))

    uses: dict[str, set[str]] = {}
    for pod in plan.pods + ([plan.test_pod] if plan.test_pod else []):
        for name, use in _secret_uses(pod["spec"]):
            uses.setdefault(name, set()).add(use)
    for name, kinds_of_use in sorted(uses.items()):
        if name not in data:
            raise ValueError(f"Secret {name} is read by a pod but neither rendered nor given")
        if kinds_of_use == {"env"}:
            encoded = {key: base64.b64encode(value).decode() for key, value in data[name].items()}
            plan.secrets[name] = json.dumps(encoded).encode()
        elif kinds_of_use == {"volume"}:
            written = {key: value.decode() for key, value in data[name].items()}
            plan.secrets[name] = json.dumps({"data": written}).encode()
        else:
            raise ValueError(f"Secret {name} is read both as environment and as a volume: podman 4.3 cannot")
    return plan


def proof_values(image: str, database_url: str, token_seed: str) -> dict[str, Any]:
    """Chart values for the proof: hub, detector, converter and annotator with mutual TLS and auth."""
    registry, _, rest = image.partition("/")
    repository, _, tag = rest.rpartition(":")
    return {
        "image": {"registry": registry, "repository": repository, "tag": tag, "pullPolicy": "Never"},
        "database": {"url": database_url},
        "auth": {"enabled": True, "tokenSeed": token_seed},
        "tls": {"enabled": True, "existingSecret": TLS_SECRET, "mutual": True, "clientSecret": CLIENT_SECRET},
        "loop": {"podDisruptionBudget": {"enabled": False}},
        "detector": {"replicas": 1, "autoscaling": {"enabled": False}, "podDisruptionBudget": {"enabled": False}},
        "trainer": {"enabled": False},
        "tests": {"enabled": True},
    }


def postgresql_pod(image: str, user: str, database: str) -> dict[str, Any]:
    """PostgreSQL (deploy/podman/postgresql.Containerfile) with the chart's server certificate."""
    return {
        "metadata": {"name": POSTGRESQL, "labels": {"app.kubernetes.io/name": "postgresql"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True},
            "containers": [
                {
                    "name": "postgresql",
                    "image": image,
                    "env": [
                        {"name": "POSTGRES_USER", "value": user},
                        {"name": "POSTGRES_DB", "value": database},
                        {
                            "name": "POSTGRES_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": POSTGRESQL_SECRET, "key": "password"}},
                        },
                        {"name": "TLS_DIR", "value": "/etc/postgresql-tls"},
                    ],
                    "ports": [{"name": "postgresql", "containerPort": 5432, "protocol": "TCP"}],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/var/lib/postgresql/data"},
                        {"name": "tmp", "mountPath": "/tmp"},
                        {"name": "tls", "mountPath": "/etc/postgresql-tls", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
                {"name": "tls", "secret": {"secretName": TLS_SECRET}},
            ],
        },
    }


# --- running it ---------------------------------------------------------------------------------


class ProofFailed(Exception):
    pass


_started = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", flush=True)


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise ProofFailed(f"podman {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def wait_for(what: str, probe: Callable[[], Any], within: float, on_failure: Callable[[], None] | None = None) -> Any:
    """``probe()`` every second until it returns something true; past ``within`` its last exception or
    falsy answer fails the proof (after ``on_failure``, which shows what went wrong)."""
    deadline = time.monotonic() + within
    last: Any = None
    while True:
        try:
            answer = probe()
            if answer:
                return answer
            last = answer
        except Exception as error:  # the probe's failures are retried until the deadline
            last = error
        if time.monotonic() > deadline:
            if on_failure is not None:
                on_failure()
            raise ProofFailed(f"{what}: not within {within:.0f} s (last: {last!r})")
        time.sleep(1.0)


def container(pod: dict[str, Any]) -> str:
    """The podman name of a pod's (first) container."""
    return f"{pod['metadata']['name']}-{pod['spec']['containers'][0]['name']}"


def play(documents: Sequence[dict[str, Any]], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    podman("kube", "play", "--network", NETWORK, str(path))


def logs_on_failure(pod: dict[str, Any]) -> Callable[[], None]:
    def show() -> None:
        logs = podman("logs", "--tail", "40", container(pod), check=False)
        print(f"--- {container(pod)}\n{logs.stdout}{logs.stderr}", file=sys.stderr)

    return show


def psql(database_pod: dict[str, Any], query: str) -> list[str]:
    """One row of a query, through the PostgreSQL container's own socket."""
    row = podman("exec", container(database_pod), "psql", "-U", "visionloop", "-d", "visionloop", "-Atc", query)
    return row.stdout.strip().split("|")


def teardown(plan: Plan) -> None:
    pods = [pod["metadata"]["name"] for pod in plan.pods]
    if plan.test_pod:
        pods.append(plan.test_pod["metadata"]["name"])
    podman("pod", "rm", "--force", "--ignore", "--time", "0", *pods, check=False)
    for name in plan.secrets:
        podman("secret", "rm", name, check=False)
    # Secret volumes and emptyDirs: this podman storage is the proof's own.
    podman("volume", "prune", "--force", check=False)


def tls_secrets(pki: Pki) -> dict[str, dict[str, bytes]]:
    """tls.existingSecret and tls.clientSecret, in cert-manager's layout."""
    return {
        TLS_SECRET: {
            "tls.crt": pki.server_cert.read_bytes(),
            "tls.key": pki.server_key.read_bytes(),
            "ca.crt": pki.ca.read_bytes(),
        },
        CLIENT_SECRET: {"tls.crt": pki.client_cert.read_bytes(), "tls.key": pki.client_key.read_bytes()},
    }


def run(args: argparse.Namespace) -> None:
    if shutil.which("podman") is None:
        raise ProofFailed("podman is not installed (deploy/podman/prove installs it)")
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    pki = make_pki(workdir / "pki", server_names=[*(f"{RELEASE}-{c}" for c in COMPONENTS), POSTGRESQL])
    password = secrets.token_urlsafe(24)
    # verify-full: the hub checks the server's certificate against the chart's CA (mounted in its pod).
    database_url = (
        f"postgresql://visionloop:{password}@{POSTGRESQL}:5432/visionloop"
        "?sslmode=verify-full&sslrootcert=/etc/visionloop/tls/ca.crt"
    )
    documents = render(proof_values(args.image, database_url, secrets.token_urlsafe(32)))
    database_pod = postgresql_pod(args.postgresql_image, "visionloop", "visionloop")
    extra = {**tls_secrets(pki), POSTGRESQL_SECRET: {"password": password.encode()}}
    plan = podman_plan(documents, extra, [database_pod])
    database_pod, service_pods = plan.pods[-1], plan.pods[:-1]
    auth = next(d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"] == f"{RELEASE}-auth")
    tokens = {key: value.decode() for key, value in secret_data(auth).items()}
    say(f"rendered the chart: {len(service_pods)} services, {len(plan.secrets)} secrets")

    teardown(plan)  # what an interrupted run left
    if podman("network", "exists", NETWORK, check=False).returncode != 0:
        podman("network", "create", NETWORK)
    for name, content in plan.secrets.items():
        path = workdir / f"secret-{name}.json"
        path.write_bytes(content)
        podman("secret", "create", name, str(path))
    try:
        play([database_pod], workdir / "postgresql.yaml")

        def ready() -> bool:
            return podman("exec", container(database_pod), "pg_isready", "-q", check=False).returncode == 0

        wait_for("PostgreSQL accepts connections", ready, within=120, on_failure=logs_on_failure(database_pod))
        say("PostgreSQL is up (scram-sha-256 over TLS only)")

        play([*plan.config_maps, *service_pods], workdir / "services.yaml")
        say(f"kube play: {', '.join(p['metadata']['name'] for p in service_pods)}")
        check_serving(plan, service_pods)
        check_users(service_pods)

        client_tls = {"root_certificates": pki.ca, "certificate_chain": pki.client_cert, "private_key": pki.client_key}
        targets = {c: f"localhost:{plan.published[f'{RELEASE}-{c}']['grpc']}" for c in COMPONENTS}
        check_nodes(targets, tokens, client_tls)
        check_refusals(targets["detector"], pki, tokens["robot-token"])
        check_detect(targets, tokens, client_tls, workdir)
        check_database(database_pod)
        if plan.test_pod is not None:
            check_helm_test(plan.test_pod, workdir)
    finally:
        if args.keep:
            say(f"kept: podman pod ps (network {NETWORK})")
        else:
            teardown(plan)
            say("pods, secrets and volumes removed")


def check_serving(plan: Plan, pods: Sequence[dict[str, Any]]) -> None:
    for pod in pods:
        port = plan.published[pod["metadata"]["name"]]["health"]

        def serving(port: int = port) -> bool:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                return bool(check.status == health_pb2.HealthCheckResponse.SERVING)

        wait_for(f"{pod['metadata']['name']} health", serving, within=300, on_failure=logs_on_failure(pod))
        say(f"{pod['metadata']['name']}: SERVING on its health port (127.0.0.1:{port})")


def check_users(pods: Sequence[dict[str, Any]]) -> None:
    for pod in pods:
        inspected = podman("inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}", container(pod))
        user, read_only = inspected.stdout.split()
        if user.split(":")[0] != "10001" or read_only != "true":
            raise ProofFailed(f"{container(pod)}: runs as {user}, read-only root filesystem {read_only}")
    say("every service runs as user 10001 on a read-only root filesystem")


def check_nodes(targets: dict[str, str], tokens: dict[str, str], client_tls: dict[str, Any]) -> None:
    with create_channel(ChannelConfig(targets["loop"], token=tokens["admin-token"], **client_tls)) as channel:
        nodes = node_service_pb2_grpc.NodeServiceStub(channel)
        wanted = {node_pb2.NODE_TYPE_DETECTOR, node_pb2.NODE_TYPE_CONVERTER}

        def registered() -> bool:
            found = nodes.ListNodes(node_service_pb2.ListNodesRequest(), timeout=10).nodes
            return wanted <= {node.type for node in found}

        wait_for("the detector and the converter registered with the hub", registered, within=120)
    say("the detector and the converter registered with the hub (mutual TLS, their own tokens)")

    # The annotator ranks the hub's queue: it calls the hub with its own token and certificate.
    with create_channel(ChannelConfig(targets["annotator"], token=tokens["annotator-token"], **client_tls)) as channel:
        request = annotator_service_pb2.RankQueueRequest(organization="demo", project="demo")
        ranked = annotator_service_pb2_grpc.AnnotatorServiceStub(channel).RankQueue(request, timeout=30).ranked
    say(f"the annotator ranked the hub's queue of demo/demo through the hub ({ranked} images)")


def check_refusals(detector: str, pki: Pki, robot_token: str) -> None:
    """A robot without a client certificate, and one with a wrong token: both refused."""
    attempts = {
        "no client certificate": {"token": robot_token, "root_certificates": pki.ca},
        "a wrong token": {
            "token": "not-a-token",
            "root_certificates": pki.ca,
            "certificate_chain": pki.client_cert,
            "private_key": pki.client_key,
        },
    }
    codes = {}
    for what, options in attempts.items():
        with DetectorClient(detector, retry=None, **options) as robot:
            try:
                robot.about(timeout=10)
                codes[what] = "OK"
            except grpc.RpcError as error:
                codes[what] = error.code().name
    if list(codes.values()) != ["UNAVAILABLE", "UNAUTHENTICATED"]:
        raise ProofFailed(
            f"expected UNAVAILABLE without a client certificate, UNAUTHENTICATED with a bad token: {codes}"
        )
    say("refused: " + ", ".join(f"{what} -> {code}" for what, code in codes.items()))


def check_detect(targets: dict[str, str], tokens: dict[str, str], client_tls: dict[str, Any], workdir: Path) -> None:
    """An admin uploads a model to the hub; the detector follows the deployment; a robot's Detect uses it."""
    with LoopClient(targets["loop"], "demo", "demo", token=tokens["admin-token"], **client_tls) as admin:
        version = admin.upload_model(model_zip(workdir / "model.zip"), "onnx").version
    pixels = np.full((480, 640, 3), 20, dtype=np.uint8)
    pixels[120:216, 200:296] = (0, 0, 255)  # a red square (BGR) the synthetic model finds
    with DetectorClient(targets["detector"], token=tokens["robot-token"], timeout=30, **client_tls) as robot:
        answer = wait_for(
            f"the detector serves model {version}",
            lambda: (response := robot.detect(pixels)).model_version == version and response,
            within=180,
        )
    on_square = [
        box
        for box in answer.detections.boxes
        if box.category_name == "red"
        and 200 <= box.box.x + box.box.width / 2 <= 296
        and 120 <= box.box.y + box.box.height / 2 <= 216
    ]
    if not on_square:
        raise ProofFailed(f"no red box on the red square: {answer.detections}")
    say(f"Detect through the detector pod answered with model {version}: a red box on the red square")


def check_database(database_pod: dict[str, Any]) -> None:
    with_tls, connections = psql(
        database_pod,
        "select count(*) filter (where ssl), count(*) from pg_stat_ssl join pg_stat_activity using (pid)"
        " where datname = 'visionloop' and client_addr is not null",
    )
    (tables,) = psql(database_pod, "select count(*) from pg_tables where schemaname = 'public'")
    if connections == "0" or with_tls != connections or tables == "0":
        raise ProofFailed(f"the hub's database: {with_tls} of {connections} connections with TLS, {tables} tables")
    say(f"the hub's {connections} database connections all use TLS; {tables} tables in PostgreSQL")


def check_helm_test(test_pod: dict[str, Any], workdir: Path) -> None:
    """The chart's `helm test` pod, inside the network: health over mutual TLS on every Service name."""
    play([test_pod], workdir / "test.yaml")

    def finished() -> list[str] | None:
        state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container(test_pod))
        status, code = state.stdout.split()
        return [code] if status == "exited" else None

    (code,) = wait_for("the helm test pod finishes", finished, within=120)
    output = podman("logs", container(test_pod)).stdout.strip()
    if code != "0":
        raise ProofFailed(f"the helm test pod exited {code}:\n{output}")
    say("helm test pod: " + "; ".join(output.splitlines()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--image", required=True, help="the light image, e.g. localhost/visionloop:proof")
    parser.add_argument("--postgresql-image", required=True, help="deploy/podman/postgresql.Containerfile's")
    parser.add_argument("--workdir", type=Path, required=True, help="certificates and manifests go here")
    parser.add_argument("--keep", action="store_true", help="leave the pods running")
    args = parser.parse_args(argv)
    try:
        run(args)
    except ProofFailed as failure:
        say(f"FAILED: {failure}")
        return 1
    say("proof passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

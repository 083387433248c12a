"""deploy/podman/prove's translation of the rendered chart into what podman 4.3's ``kube play`` runs
(tests/deploy/podman_proof.py), read back the way podman 4.3 reads it; the proof itself builds the
images and runs them (docs/deployment.md)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import REPO, chart_pki, validate_settings
from tests.deploy.podman_proof import (
    CLIENT_SECRET,
    POSTGRESQL_SECRET,
    TLS_SECRET,
    Plan,
    podman_plan,
    postgresql_pod,
    proof_values,
    secret_data,
)
from tests.deploy.test_chart import by_kind, render

DATABASE_URL = "postgresql://visionloop:pw@vl-postgresql:5432/visionloop?sslmode=verify-full"
VALUES = proof_values("localhost/visionloop:proof", DATABASE_URL, "a-seed-for-the-podman-test-of-32-chars")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Plan]:
    documents = render(VALUES)
    _, tls = chart_pki(tmp_path_factory.mktemp("pki"))
    extra = {TLS_SECRET: tls["visionloop-tls"], CLIENT_SECRET: tls["visionloop-node-tls"]}
    extra[POSTGRESQL_SECRET] = {"password": b"pw"}
    pods = [postgresql_pod("localhost/visionloop-postgresql:proof", "visionloop", "visionloop")]
    return documents, podman_plan(documents, extra, pods)


def env_secret(content: bytes) -> dict[str, bytes]:
    """What podman 4.3 reads for ``secretKeyRef``: a JSON object whose values are base64 (Go's []byte)."""
    return {key: base64.b64decode(value) for key, value in json.loads(content).items()}


def volume_secret(content: bytes) -> dict[str, bytes]:
    """What podman 4.3 writes into a secret volume: each ``data`` value verbatim (optional must be set)."""
    return {key: value.encode() for key, value in json.loads(content)["data"].items()}


def podman_env(container: dict[str, Any], secrets: dict[str, bytes]) -> dict[str, str]:
    env = {}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = env_secret(secrets[reference["name"]])[reference["key"]].decode()
    return env


def test_deployments_become_pods_named_after_their_services(rendered: tuple[list[dict[str, Any]], Plan]) -> None:
    documents, plan = rendered
    names = [pod["metadata"]["name"] for pod in plan.pods]
    assert names[:-1] == list(by_kind(documents, "Deployment"))
    assert set(names[:-1]) <= set(by_kind(documents, "Service"))
    assert names[-1] == "vl-postgresql"
    assert all(pod["kind"] == "Pod" for pod in plan.pods)
    assert plan.test_pod is not None
    assert plan.test_pod["metadata"]["name"] == "vl-visionloop-test"
    # the services' images are the proof's, never pulled
    for pod in [*plan.pods[:-1], plan.test_pod]:
        for container in pod["spec"]["containers"]:
            assert (container["image"], container["imagePullPolicy"]) == ("localhost/visionloop:proof", "Never")


def test_every_port_is_published_on_loopback_at_its_own_host_port(rendered: tuple[list[dict[str, Any]], Plan]) -> None:
    _, plan = rendered
    host_ports = []
    for pod in plan.pods:
        for container in pod["spec"]["containers"]:
            for port in container["ports"]:
                assert port["hostIP"] == "127.0.0.1"
                assert plan.published[pod["metadata"]["name"]][port["name"]] == port["hostPort"]
                host_ports.append(port["hostPort"])
    # every pod's TLS health port is 50060 in the pod; on the host each has its own
    assert len(host_ports) == len(set(host_ports)) == 4 * 3 + 1


def test_each_pod_gets_its_own_scratch_volumes(rendered: tuple[list[dict[str, Any]], Plan]) -> None:
    """podman 4.3 makes an emptyDir a volume named after the pod's volume: every pod's "data" would be one."""
    _, plan = rendered
    seen: set[str] = set()
    for pod in plan.pods:
        name = pod["metadata"]["name"]
        scratch = {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
        assert scratch, name
        assert all(volume.startswith(f"{name}-") for volume in scratch)
        assert not scratch & seen
        seen |= scratch
        mounted = {m["name"] for c in pod["spec"]["containers"] for m in c["volumeMounts"]}
        assert {v["name"] for v in pod["spec"]["volumes"]} == mounted
        # podman 4.3 refuses annotation values over 63 characters (the chart's checksum/secrets is 64)
        assert all(len(v) <= 63 for v in pod["metadata"].get("annotations", {}).values())


def test_each_service_accepts_the_environment_podman_gives_it(
    rendered: tuple[list[dict[str, Any]], Plan], tmp_path: Path
) -> None:
    documents, plan = rendered
    for pod in plan.pods[:-1]:
        container = pod["spec"]["containers"][0]
        env = podman_env(container, plan.secrets)
        # the rendered Secrets' values, through podman's JSON/base64 form unchanged
        auth = secret_data(by_kind(documents, "Secret")["vl-visionloop-auth"])
        assert env["VISIONLOOP_AUTH_TOKENS"] == auth["auth-tokens"].decode()
        if container["name"] == "loop":
            assert env["DATABASE_URL"] == DATABASE_URL
        files = _tls_files(tmp_path, env, plan)
        assert {"VISIONLOOP_TLS_CERT", "VISIONLOOP_TLS_KEY", "VISIONLOOP_TLS_CLIENT_CA"} <= set(files)
        validate_settings(container["name"], {**env, **files})


def _tls_files(root: Path, env: dict[str, str], plan: Plan) -> dict[str, str]:
    """The TLS variables pointed at the files podman writes from the secret volumes (under ``root``)."""
    mounts = {"/etc/visionloop/tls": TLS_SECRET, "/etc/visionloop/tls-client": CLIENT_SECRET}
    pointed = {}
    for name, value in env.items():
        folder, _, key = value.rpartition("/")
        if folder in mounts:
            path = root / mounts[folder] / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(volume_secret(plan.secrets[mounts[folder]])[key])
            pointed[name] = str(path)
    return pointed


def test_secret_volumes_hold_the_pem_files_and_say_whether_they_are_optional(
    rendered: tuple[list[dict[str, Any]], Plan],
) -> None:
    _, plan = rendered
    assert volume_secret(plan.secrets[TLS_SECRET])["tls.crt"].startswith(b"-----BEGIN CERTIFICATE-----")
    assert set(volume_secret(plan.secrets[CLIENT_SECRET])) == {"tls.crt", "tls.key"}
    assert env_secret(plan.secrets[POSTGRESQL_SECRET]) == {"password": b"pw"}
    for pod in [*plan.pods, plan.test_pod]:
        assert pod is not None
        for volume in pod["spec"].get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["optional"] is False


def test_what_podman_cannot_run_is_refused() -> None:
    documents = render(VALUES)
    tls = {
        TLS_SECRET: {"tls.crt": b"c", "tls.key": b"k", "ca.crt": b"a"},
        CLIENT_SECRET: {"tls.crt": b"c", "tls.key": b"k"},
    }
    with pytest.raises(ValueError, match="visionloop-node-tls is read by a pod but neither rendered nor given"):
        podman_plan(documents, {TLS_SECRET: tls[TLS_SECRET]})

    scaled = [dict(d, spec={**d["spec"], "replicas": 2}) if d["kind"] == "Deployment" else d for d in documents]
    with pytest.raises(ValueError, match="one replica per Service name"):
        podman_plan(scaled, tls)

    nameless = [d for d in documents if not (d["kind"] == "Service" and d["metadata"]["name"].endswith("-converter"))]
    with pytest.raises(ValueError, match="vl-visionloop-converter has no Service of its name"):
        podman_plan(nameless, tls)

    both = postgresql_pod("img", "u", "d")
    both["spec"]["containers"][0]["env"].append(
        {"name": "CA", "valueFrom": {"secretKeyRef": {"name": TLS_SECRET, "key": "ca.crt"}}}
    )
    with pytest.raises(ValueError, match="both as environment and as a volume"):
        podman_plan(documents, {**tls, POSTGRESQL_SECRET: {"password": b"p"}}, [both])


@pytest.mark.slow
@pytest.mark.timeout(2700)
@pytest.mark.skipif(
    os.environ.get("CI") != "true" and not os.environ.get("VISIONLOOP_PROVE"),
    reason="the full proof builds images (minutes): CI runs it, or set VISIONLOOP_PROVE=1",
)
def test_the_images_built_here_run_the_chart_under_podman() -> None:
    """deploy/podman/prove end to end: images built on a debootstrap base, the chart under podman kube play."""
    if os.geteuid() != 0:
        pytest.skip("the proof runs rootful podman and debootstrap: root only")
    result = subprocess.run(
        [str(REPO / "deploy" / "podman" / "prove")], capture_output=True, text=True, timeout=2600, check=False
    )
    assert result.returncode == 0, result.stdout[-10_000:] + result.stderr[-5_000:]
    assert "proof passed" in result.stdout

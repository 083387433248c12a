"""The Helm chart: strict lint, offline rendering for several value files, Kubernetes schema validation."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import ALERTS, CHART, DASHBOARDS, accepted_env, chart_pki, materialize, validate_settings
from visionloop.runtime.access import Scope, Tokens, parse_tokens
from visionloop.server.converter.repository import triton_s3_url

KUBE_VERSION = "1.31.0"
VALUE_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
SERVICES = ("loop", "detector", "trainer", "converter", "annotator")

# The Prometheus operator's CRDs are not in the Kubernetes schemas: the fields the chart uses, checked here.
OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {"type": "object"},
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            },
                        },
                    },
                },
            },
        },
    },
    # Gateway API v1 GRPCRoute: the fields of its CRD the chart uses.
    "GRPCRoute": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
            "spec": {
                "type": "object",
                "required": ["parentRefs", "rules"],
                "additionalProperties": False,
                "properties": {
                    "parentRefs": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "additionalProperties": False,
                            "properties": {
                                "group": {"type": "string"},
                                "kind": {"type": "string"},
                                "namespace": {"type": "string"},
                                "name": {"type": "string", "minLength": 1},
                                "sectionName": {"type": "string"},
                                "port": {"type": "integer"},
                            },
                        },
                    },
                    "hostnames": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                        },
                    },
                    "rules": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "backendRefs": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["name", "port"],
                                        "additionalProperties": False,
                                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                                    },
                                }
                            },
                        },
                    },
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["groups"],
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "properties": {
                                "rules": {
                                    "type": "array",
                                    "items": {"type": "object", "required": ["expr"]},
                                }
                            },
                        },
                    }
                },
            },
        },
    },
}


# What the chart's Secrets hold, by key, for building settings from rendered environments.
SECRET_SAMPLES = {
    "auth-tokens": "admin=a1,robot=r1,annotator=x1,detector_node@demo/demo=d1,trainer_node=t1",
    "detector-token": "d1",
    "trainer-token": "t1",
    "converter-token": "c1",
    "annotator-node-token": "n1",
    "label-studio-bridge-token": "label-studio-bridge-credential",
    "database-url": "postgresql://u:p@db:5432/visionloop",
    "s3-access-key-id": "key",
    "s3-secret-access-key": "secret",
    "stream-depth": "4",  # full-values.yaml's ConfigMap entry
}


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    rendered = chart.render(values, name="vl", namespace="vision", is_install=True)
    documents: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if not path.endswith(".yaml"):
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def pod_specs(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    specs = {name: d["spec"]["template"]["spec"] for name, d in by_kind(documents, "Deployment").items()}
    specs.update({name: d["spec"] for name, d in by_kind(documents, "Pod").items()})
    return specs


@pytest.fixture(scope="module", params=VALUE_FILES, ids=[p.name for p in VALUE_FILES])
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param.name, render(load_values(request.param))


def test_the_value_files_cover_minimal_gpu_and_everything() -> None:
    assert {p.name for p in VALUE_FILES} >= {"minimal-values.yaml", "gpu-values.yaml", "full-values.yaml"}


@pytest.mark.parametrize("values_file", VALUE_FILES, ids=[p.name for p in VALUE_FILES])
def test_chart_passes_strict_lint(values_file: Path) -> None:
    report = helm.lint(CHART, load_values(values_file), strict=True, namespace="vision", kube_version="v1.31.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert report["total_charts_linted"] == 1
    assert problems == []


def test_lint_reports_bad_values() -> None:
    """The lint check can fail: values the schema refuses do not pass."""
    report = helm.lint(CHART, {"detector": {"replicas": "two"}}, strict=True)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"])


def test_every_manifest_validates_against_the_kubernetes_schemas(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    assert documents
    for document in documents:
        if document["kind"] in OPERATOR_SCHEMAS:
            jsonschema.validate(document, OPERATOR_SCHEMAS[document["kind"]])
            continue
        kubernetes_validate.validate(document, KUBE_VERSION, strict=True)


def test_validation_catches_a_wrong_manifest() -> None:
    """The schema check is real: a misspelled field fails it."""
    document = render(load_values(CHART / "ci" / "minimal-values.yaml"))[0]
    broken = json.loads(json.dumps(document))
    broken["metadata"]["lables"] = {"a": "b"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (("detector", "replicas"), "two"),
        (("trainer", "gpu", "enabled"), "yes"),
        (("loop", "port"), "50051"),
        (("config", "logLevel"), "loud"),
        (("detector", "backend"), "tensorflow"),
    ],
)
def test_values_schema_rejects_a_wrong_type(key: tuple[str, ...], value: Any) -> None:
    values: dict[str, Any] = load_values(CHART / "ci" / "minimal-values.yaml")
    node = values
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = value
    chart = helm.Chart.load(CHART)
    with pytest.raises(helm.HelmError, match=key[-1]):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        chart.render(values, name="vl", namespace="vision")


def test_default_values_pass_the_schema() -> None:
    helm.Chart.load(CHART).validate_schema({"database": {"url": "postgresql://u:p@db:5432/visionloop"}})


def test_every_pod_runs_non_root_with_a_read_only_root_filesystem(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    for name, spec in pod_specs(documents).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name


def test_services_use_native_grpc_probes_and_serve_their_command(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """Native gRPC probes: on the service port, or with TLS (which kubelet's gRPC probes cannot speak) on
    the plaintext health port the service opens for them."""
    name, documents = rendered
    tls = load_values(CHART / "ci" / name).get("tls", {}).get("enabled", False)
    deployments = by_kind(documents, "Deployment")
    for service in SERVICES:
        container = deployments[f"vl-visionloop-{service}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", service]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        env = {e["name"]: e.get("value") for e in container["env"]}
        if tls:
            assert env["VISIONLOOP_HEALTH_PORT"] == str(ports["health"]), service
            assert ports["health"] not in (ports["grpc"], ports["metrics"])
        else:
            assert "health" not in ports
            assert "VISIONLOOP_HEALTH_PORT" not in env
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == ports["health" if tls else "grpc"]


def test_rendered_environment_is_what_each_service_accepts(
    rendered: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Every variable is one the service reads, and start-up's checks pass on the values, TLS files
    included (the test's certificates written where the Secret volumes are mounted)."""
    _, documents = rendered
    _, secrets = chart_pki(tmp_path / "pki")
    deployments = by_kind(documents, "Deployment")
    for service in SERVICES:
        pod = deployments[f"vl-visionloop-{service}"]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), f"{service}: duplicate variables"
        unknown = set(names) - accepted_env(service)
        assert not unknown, f"{service} does not read {sorted(unknown)}"
        validate_settings(service, materialize(pod, container, tmp_path / service, secrets, SECRET_SAMPLES))


def test_gpu_cluster_puts_triton_and_the_trainer_on_gpu_nodes() -> None:
    values = load_values(CHART / "ci" / "gpu-values.yaml")
    documents = render(values)
    specs = pod_specs(documents)
    for name, gpus in (("vl-visionloop-triton", 1), ("vl-visionloop-trainer", 2)):
        spec = specs[name]
        container = spec["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert "nvidia.com/gpu" not in container["resources"].get("requests", {})
        assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    triton = specs["vl-visionloop-triton"]["containers"][0]
    assert "--model-control-mode=explicit" in triton["args"]
    # AWS: bucket/prefix, the region from AWS_DEFAULT_REGION (not the endpoint, which Triton would read as a bucket)
    assert "--model-repository=s3://acme-visionloop/triton" in triton["args"]
    assert {"name": "AWS_DEFAULT_REGION", "value": "eu-central-1"} in triton["env"]
    for name in ("vl-visionloop-triton", "vl-visionloop-trainer"):
        assert specs[name]["runtimeClassName"] == "nvidia"
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "model loading needs minutes"
    detector = specs["vl-visionloop-detector"]
    detector_env = {e["name"]: e.get("value") for e in detector["containers"][0]["env"]}
    # every Triton replica by name (a headless Service): what the detectors unload reaches each one
    assert detector_env["TRITON_URL"] == "vl-visionloop-triton-pods:8001"
    pods = by_kind(documents, "Service")["vl-visionloop-triton-pods"]
    assert pods["spec"]["clusterIP"] == "None"
    assert (
        pods["spec"]["selector"]
        == by_kind(documents, "Deployment")["vl-visionloop-triton"]["spec"]["selector"]["matchLabels"]
    )
    # the detectors' own repository: one ReadWriteMany volume, written by detectors, served by Triton
    assert f"--model-repository={detector_env['TRITON_MODEL_REPOSITORY']}" in triton["args"]
    claim = by_kind(documents, "PersistentVolumeClaim")["vl-visionloop-triton-models"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for spec in (detector, specs["vl-visionloop-triton"]):
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "vl-visionloop-triton-models"
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["models"] == detector_env["TRITON_MODEL_REPOSITORY"]
    hpa = by_kind(documents, "HorizontalPodAutoscaler")["vl-visionloop-detector"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert "replicas" not in by_kind(documents, "Deployment")["vl-visionloop-detector"]["spec"]


def test_triton_backend_without_triton_is_refused() -> None:
    values = load_values(CHART / "ci" / "minimal-values.yaml")
    values["detector"]["backend"] = "triton"
    with pytest.raises(helm.HelmError, match=r"triton\.enabled"):
        render(values)


def test_triton_gpu_can_be_switched_off() -> None:
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    limits = pod_specs(documents)["vl-visionloop-triton"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits


# The auth Secret's key for each node kind's own token (LOOP_TOKEN), and the role it holds.
NODE_TOKENS = {
    "detector": ("detector-token", "detector_node"),
    "trainer": ("trainer-token", "trainer_node"),
    "converter": ("converter-token", "converter_node"),
    "annotator": ("annotator-node-token", "annotator_node"),
}


def test_each_node_gets_its_own_kinds_token_and_no_service_holds_the_admin_token() -> None:
    values = load_values(CHART / "ci" / "full-values.yaml")
    values["auth"]["tokens"]["node"] = "legacy-node-token"
    documents = render(values)
    auth = by_kind(documents, "Secret")["vl-visionloop-auth"]["stringData"]
    assert auth["admin-token"] == "admin-token-for-tests"  # given in the values
    accepted = Tokens(parse_tokens(auth["auth-tokens"]))
    # The accepted list holds digests only: no token of any role is in it.
    for key, token in auth.items():
        if key != "auth-tokens":
            assert token not in auth["auth-tokens"], key
    assert [(g.role, g.scope) for g in accepted.grants_of("admin-token-for-tests")] == [("admin", None)]
    assert [g.role for g in accepted.grants_of("legacy-node-token")] == ["node"]  # accepted, given to no pod
    deployments = by_kind(documents, "Deployment")
    for service in SERVICES:
        container = deployments[f"vl-visionloop-{service}"]["spec"]["template"]["spec"]["containers"][0]
        keys = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert keys["VISIONLOOP_AUTH_TOKENS"] == "auth-tokens", service
        secrets = {key for name, key in keys.items() if name in ("VISIONLOOP_AUTH_TOKENS", "LOOP_TOKEN")}
        assert "admin-token" not in secrets, service
        if service == "loop":
            assert "LOOP_TOKEN" not in keys
            continue
        key, role = NODE_TOKENS[service]
        assert keys["LOOP_TOKEN"] == key, service
        limited = Scope("demo", "demo") if service in ("detector", "trainer") else None
        assert [(g.role, g.scope) for g in accepted.grants_of(auth[key])] == [(role, limited)], service


def test_secrets_hold_credentials_and_tokens() -> None:
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    secrets = by_kind(documents, "Secret")
    auth = secrets["vl-visionloop-auth"]["stringData"]
    assert set(auth) == {
        "auth-tokens",
        *(f"{role}-token" for role in ("admin", "operator", "robot", "annotator")),
        *(key for key, _ in NODE_TOKENS.values()),
    }
    assert len(auth["detector-token"]) == 64  # derived from auth.tokenSeed
    credentials = secrets["vl-visionloop-credentials"]["stringData"]
    assert credentials["database-url"] == "postgresql://visionloop:visionloop@vl-visionloop-postgresql:5432/visionloop"
    assert set(credentials) >= {"s3-access-key-id", "s3-secret-access-key"}
    # credentials reach the pods through secretKeyRef only, never as literal values
    for spec in pod_specs(documents).values():
        for container in spec["containers"]:
            for variable in container.get("env", []):
                if any(word in variable["name"] for word in ("TOKEN", "SECRET", "PASSWORD", "DATABASE_URL")):
                    assert "valueFrom" in variable, variable["name"]


def test_existing_secrets_replace_generated_ones() -> None:
    documents = render(load_values(CHART / "ci" / "gpu-values.yaml"))
    assert by_kind(documents, "Secret") == {}
    loop = pod_specs(documents)["vl-visionloop-loop"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in loop["env"] if "valueFrom" in e}
    assert refs == {
        "VISIONLOOP_AUTH_TOKENS": "visionloop-auth",
        "DATABASE_URL": "visionloop-database",
        "S3_ACCESS_KEY_ID": "visionloop-s3",
        "S3_SECRET_ACCESS_KEY": "visionloop-s3",
    }


def test_network_policies_deny_by_default_and_name_callers() -> None:
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    policies = by_kind(documents, "NetworkPolicy")
    deny = policies["vl-visionloop-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    loop_rules = policies["vl-visionloop-loop"]["spec"]["ingress"]
    callers = loop_rules[0]["from"][0]["podSelector"]["matchExpressions"][1]["values"]
    assert set(callers) == {"detector", "trainer", "converter", "annotator", "test"}
    for name, policy in policies.items():
        if name.endswith(("default-deny", "postgresql", "minio")):
            continue
        scrape = policy["spec"]["ingress"][-1]
        assert scrape["ports"] == [{"port": "metrics", "protocol": "TCP"}], name
        assert scrape["from"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ], name
    detector_from = policies["vl-visionloop-detector"]["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "robots"}}} in detector_from


def test_pod_disruption_budgets_and_labels(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    for document in documents:
        labels = document["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "visionloop"
        assert labels["app.kubernetes.io/instance"] == "vl"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    deployments = by_kind(documents, "Deployment")
    for pdb in by_kind(documents, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(d["spec"]["selector"]["matchLabels"] == selector for d in deployments.values())


@pytest.mark.parametrize("replicas", [1, 3])
def test_hubs_count_the_one_an_upgrade_adds(replicas: int) -> None:
    """An upgrade runs a new hub beside the old ones before stopping one, so even one replica's hub
    runs as one of several: it fences its uploads against another hub's blob sweep."""
    values = load_values(CHART / "ci" / "minimal-values.yaml")
    values.setdefault("loop", {})["replicas"] = replicas
    values["s3"] = {"endpoint": "http://minio.storage:9000", "accessKeyId": "k", "secretAccessKey": "s"}
    deployment = by_kind(render(values), "Deployment")["vl-visionloop-loop"]
    assert deployment["spec"]["replicas"] == replicas
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["VISIONLOOP_HUB_REPLICAS"] == str(replicas + 1)


def test_helm_test_pod_checks_health_of_every_enabled_service() -> None:
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    pod = by_kind(documents, "Pod")["vl-visionloop-test"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    command = pod["spec"]["containers"][0]["command"]
    assert "grpc_health.v1" in command[2]
    assert command[3:] == [
        "vl-visionloop-loop:50051",
        "vl-visionloop-detector:50052",
        "vl-visionloop-trainer:50053",
        "vl-visionloop-converter:50054",
        "vl-visionloop-annotator:50055",
    ]


def test_service_monitor_names_jobs_after_components() -> None:
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    monitor = by_kind(documents, "ServiceMonitor")["vl-visionloop"]
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/component"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    services = by_kind(documents, "Service")
    for service in (*SERVICES, "triton"):
        assert "metrics" in {p["name"] for p in services[f"vl-visionloop-{service}"]["spec"]["ports"]}


def test_prometheus_rule_carries_the_alert_rules_and_passes_promtool(tmp_path: Path) -> None:
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    rule = by_kind(documents, "PrometheusRule")["vl-visionloop"]
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    subprocess.run(["promtool", "check", "rules", str(rules_file)], check=True, capture_output=True)


def test_dashboards_ship_as_config_maps() -> None:
    shipped = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert len(shipped) == 5
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    maps = [d for d in by_kind(documents, "ConfigMap").values() if d["metadata"]["labels"].get("grafana_dashboard")]
    assert sorted(name for m in maps for name in m["data"]) == shipped
    for config_map in maps:
        for name, text in config_map["data"].items():
            assert json.loads(text) == json.loads((DASHBOARDS / name).read_text())


def notes(values: dict[str, Any]) -> str:
    chart = helm.Chart.load(CHART)
    return chart.render(values, name="vl", namespace="vision", is_install=True)["visionloop/templates/NOTES.txt"]


def minimal() -> dict[str, Any]:
    return load_values(CHART / "ci" / "minimal-values.yaml")


def with_s3(values: dict[str, Any]) -> dict[str, Any]:
    values["s3"] = {"endpoint": "http://minio.storage:9000", "accessKeyId": "k", "secretAccessKey": "s"}
    return values


def test_tls_reaches_every_visionloop_pod_and_the_test_pod() -> None:
    """Servers get the certificate, key and (mutual TLS) client CA; nodes the hub's CA and their client
    certificate; the helm test calls every service as a client would, through the same files."""
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    specs = pod_specs(documents)
    for service in (*SERVICES, "test"):
        spec = specs[f"vl-visionloop-{service}"]
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["tls"]["secret"]["secretName"] == "visionloop-tls", service
        assert volumes["tls-client"]["secret"]["secretName"] == "visionloop-node-tls", service
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["tls"]["mountPath"] == "/etc/visionloop/tls"
        assert mounts["tls"]["readOnly"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        if service == "test":
            assert env == {
                "TLS_CA": "/etc/visionloop/tls/ca.crt",
                "TLS_CLIENT_CERT": "/etc/visionloop/tls-client/tls.crt",
                "TLS_CLIENT_KEY": "/etc/visionloop/tls-client/tls.key",
            }
            continue
        assert env["VISIONLOOP_TLS_CERT"] == "/etc/visionloop/tls/tls.crt"
        assert env["VISIONLOOP_TLS_KEY"] == "/etc/visionloop/tls/tls.key"
        assert env["VISIONLOOP_TLS_CLIENT_CA"] == "/etc/visionloop/tls/ca.crt"
        if service == "loop":
            assert "LOOP_SSL_CERT_PATH" not in env
        else:
            assert env["LOOP_SSL_CERT_PATH"] == "/etc/visionloop/tls/ca.crt"
            assert env["LOOP_CLIENT_CERT"] == "/etc/visionloop/tls-client/tls.crt"
            assert env["LOOP_CLIENT_KEY"] == "/etc/visionloop/tls-client/tls.key"
    # without a client Secret, nodes present the server certificate; without mutual TLS, none
    values = load_values(CHART / "ci" / "gpu-values.yaml")
    detector = pod_specs(render(values))["vl-visionloop-detector"]
    env = {e["name"]: e.get("value") for e in detector["containers"][0]["env"]}
    assert "VISIONLOOP_TLS_CLIENT_CA" not in env
    assert "LOOP_CLIENT_CERT" not in env
    assert [v["name"] for v in detector["volumes"]].count("tls-client") == 0
    values["tls"]["mutual"] = True
    env = {
        e["name"]: e.get("value") for e in pod_specs(render(values))["vl-visionloop-trainer"]["containers"][0]["env"]
    }
    assert env["LOOP_CLIENT_CERT"] == "/etc/visionloop/tls/tls.crt"


def test_no_tls_mounts_without_tls() -> None:
    for name, spec in pod_specs(render(minimal())).items():
        assert all(v["name"] != "tls" for v in spec.get("volumes", [])), name
        assert not any("TLS" in e["name"] or "SSL" in e["name"] for e in spec["containers"][0].get("env", [])), name


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls": {"enabled": True}}, r"tls\.enabled needs tls\.existingSecret"),
        ({"tls": {"mutual": True}}, r"tls\.mutual needs tls\.enabled"),
        ({"tls": {"enabled": True, "existingSecret": "t", "healthPort": 9092}}, r"tls\.healthPort 9092"),
        ({"loop": {"replicas": 2}}, r"loop\.replicas=2 without S3: each hub would keep images"),
        ({"detector": {"ingress": {"enabled": True}}}, r"detector\.ingress\.enabled needs detector\.ingress\.hosts"),
        ({"loop": {"grpcRoute": {"enabled": True}}}, r"loop\.grpcRoute\.enabled needs loop\.grpcRoute\.parentRefs"),
        ({"annotator": {"labelStudio": {"enabled": True, "port": 9092}}}, r"annotator\.labelStudio\.enabled needs"),
        (
            {"annotator": {"replicas": 2, "labelStudio": {"enabled": True, "port": 9092, "token": "x" * 16}}},
            r"annotator\.labelStudio\.enabled with annotator\.replicas=2",
        ),
    ],
)
def test_combinations_that_cannot_work_are_refused(values: dict[str, Any], message: str) -> None:
    merged = minimal()
    for key, value in values.items():
        merged.setdefault(key, {}).update(value)
    with pytest.raises(helm.HelmError, match=message):
        render(merged)


def test_hub_replicas_share_the_object_store() -> None:
    values = with_s3(minimal())
    values["loop"]["replicas"] = 2
    assert by_kind(render(values), "Deployment")["vl-visionloop-loop"]["spec"]["replicas"] == 2
    assert "WARNING: no S3" not in notes(values)
    assert "WARNING: no S3" in notes(minimal())  # one replica: its images live in the pod


@pytest.mark.parametrize(
    "key",
    [
        ("tls2",),
        ("detector", "service", "annotaions"),
        ("detector", "podAnnotation"),
        ("triton", "runtimeClass"),
        ("global", "imageRegistry", "x"),
        ("tls", "secret"),
    ],
)
def test_unknown_keys_are_refused_with_their_name(key: tuple[str, ...]) -> None:
    values = minimal()
    node = values
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = "x"
    with pytest.raises(helm.HelmError, match=rf"(additional properties '{key[-1]}' not allowed|got object)"):
        helm.Chart.load(CHART).validate_schema(values)
    with pytest.raises(helm.HelmError):
        render(values)


# Triton's S3 path rule (triton-inference-server/core, src/filesystem/implementations/s3.h): a path that
# fully matches this names an endpoint (http unless https:// is spelled out); any other is s3://bucket/object.
TRITON_S3_ENDPOINT = re.compile(
    r"s3://(http://|https://|)([0-9a-zA-Z\-.]+):([0-9]+)/([0-9a-z.\-]+)(((/[0-9a-zA-Z.\-_]+)*)?)"
)


def triton_reads(path: str) -> tuple[str | None, str, str]:
    """(endpoint scheme://host:port or None for AWS's default, bucket, object) as Triton reads ``path``."""
    assert path.startswith("s3://")
    match = TRITON_S3_ENDPOINT.fullmatch(path)
    if match:
        scheme = "https" if match.group(1) == "https://" else "http"
        return f"{scheme}://{match.group(2)}:{match.group(3)}", match.group(4), match.group(5).lstrip("/")
    bucket, _, rest = path.removeprefix("s3://").partition("/")
    return None, bucket, rest


@pytest.mark.parametrize(
    ("endpoint", "triton_endpoint"),
    [
        ("https://s3.eu-central-1.amazonaws.com", None),
        ("https://s3.amazonaws.com", None),
        ("https://s3.cn-north-1.amazonaws.com.cn", None),
        ("http://minio.storage:9000", "http://minio.storage:9000"),
        ("http://rgw.ceph.svc:7480", "http://rgw.ceph.svc:7480"),
        ("https://rgw.example.com", "https://rgw.example.com:443"),
        ("https://s3.example.com:8443", "https://s3.example.com:8443"),
        ("http://10.0.0.5", "http://10.0.0.5:80"),
    ],
)
def test_triton_reads_the_repository_the_converter_writes(endpoint: str, triton_endpoint: str | None) -> None:
    """The chart and the converter name the repository by one rule, and Triton reads the endpoint,
    bucket and prefix back from it (on AWS, no endpoint: the SDK's regional one)."""
    values = load_values(CHART / "ci" / "gpu-values.yaml")
    values["s3"].update(endpoint=endpoint, bucket="acme-visionloop")
    values["triton"]["repositoryPrefix"] = "models/triton_v2"
    triton = pod_specs(render(values))["vl-visionloop-triton"]["containers"][0]
    repository = next(a for a in triton["args"] if a.startswith("--model-repository=s3"))
    url = repository.removeprefix("--model-repository=")
    assert url == triton_s3_url(endpoint, "acme-visionloop", "models/triton_v2")
    assert triton_reads(url) == (triton_endpoint, "acme-visionloop", "models/triton_v2")


def test_the_old_aws_form_is_what_triton_misreads() -> None:
    """The check above can fail: the endpoint spelled into an AWS path is read as bucket 'https:'."""
    assert triton_reads("s3://https://s3.eu-central-1.amazonaws.com/acme/triton")[1] != "acme"


@pytest.mark.parametrize(
    ("s3", "message"),
    [
        ({"endpoint": "http://minio_1.storage:9000"}, "Triton reads an S3 endpoint only as a host name"),
        ({"endpoint": "http://[fd00::5]:9000"}, "Triton reads an S3 endpoint only as a host name"),
        ({"bucket": "Acme_Models"}, "bucket"),
    ],
)
def test_endpoints_and_buckets_triton_cannot_read_are_refused(s3: dict[str, str], message: str) -> None:
    values = load_values(CHART / "ci" / "gpu-values.yaml")
    values["s3"].update(s3)
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def test_offline_rendering_of_random_tokens_is_flagged() -> None:
    """A render that cannot read the cluster (helm template, Argo CD) makes new random tokens each time:
    the Secret and the NOTES say so; a seed makes them the same on every render."""
    values = with_s3(minimal())
    values["auth"] = {"enabled": True}
    chart = helm.Chart.load(CHART)
    first = chart.render(values, name="vl", namespace="vision", is_install=True)
    second = chart.render(values, name="vl", namespace="vision", is_install=True)
    secret = first["visionloop/templates/secrets.yaml"]
    assert "# WARNING: random tokens, made again on every render" in secret
    assert (
        "WARNING: the auth tokens were generated by a render that could not read the cluster"
        in first["visionloop/templates/NOTES.txt"]
    )
    assert secret != second["visionloop/templates/secrets.yaml"]

    values["auth"]["tokenSeed"] = "s" * 32
    seeded = [render(values), render(values)]
    tokens = [by_kind(documents, "Secret")["vl-visionloop-auth"]["stringData"] for documents in seeded]
    assert tokens[0] == tokens[1]
    assert len(set(tokens[0].values())) == len(tokens[0])  # one token per role
    checksums = [
        by_kind(d, "Deployment")["vl-visionloop-detector"]["spec"]["template"]["metadata"]["annotations"]
        for d in seeded
    ]
    assert checksums[0] == checksums[1]  # no restart on a sync
    assert (
        "WARNING: random tokens"
        not in helm.Chart.load(CHART).render(values, name="vl", namespace="vision")["visionloop/templates/secrets.yaml"]
    )
    assert "auth tokens were generated" not in notes(values)
    values["auth"]["tokenSeed"] = "t" * 32
    assert by_kind(render(values), "Secret")["vl-visionloop-auth"]["stringData"] != tokens[0]


def test_platform_values_reach_every_pod() -> None:
    values = load_values(CHART / "ci" / "full-values.yaml")
    documents = render(values)
    deployments = by_kind(documents, "Deployment")
    for name, deployment in deployments.items():
        template = deployment["spec"]["template"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items(), name  # podLabels never break it
        pulls = [s["name"] for s in template["spec"]["imagePullSecrets"]]
        assert pulls == ["mirror-pull", "ghcr-pull"], name
        image = template["spec"]["containers"][0]["image"]
        assert image.startswith("registry.mirror.example.com/"), (name, image)
    detector = deployments["vl-visionloop-detector"]["spec"]["template"]
    spec = detector["spec"]
    assert detector["metadata"]["labels"]["example.com/cost-center"] == "robots"
    assert detector["metadata"]["annotations"]["example.com/scrape"] == "false"
    assert "checksum/secrets" in detector["metadata"]["annotations"]
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["priorityClassName"] == "visionloop-critical"
    spread = spec["topologySpreadConstraints"][0]
    assert (
        spread["labelSelector"]["matchLabels"]
        == deployments["vl-visionloop-detector"]["spec"]["selector"]["matchLabels"]
    )
    container = spec["containers"][0]
    assert container["image"] == ("registry.mirror.example.com/visionloop/visionloop@" + values["image"]["digest"])
    assert {"name": "calibration", "configMap": {"name": "camera-calibration"}} in spec["volumes"]
    assert {"name": "calibration", "mountPath": "/etc/calibration", "readOnly": True} in container["volumeMounts"]
    assert container["envFrom"] == [{"configMapRef": {"name": "detector-extra"}}]
    depth = next(e for e in container["env"] if e["name"] == "DETECTOR_STREAM_DEPTH")
    assert depth["valueFrom"]["configMapKeyRef"]["name"] == "detector-tuning"
    trainer = deployments["vl-visionloop-trainer"]["spec"]["template"]["spec"]
    # the trainer's own repository; its digest, not the light image's
    assert trainer["containers"][0]["image"] == (
        "registry.mirror.example.com/visionloop/visionloop-trainer@" + values["trainer"]["image"]["digest"]
    )
    triton = deployments["vl-visionloop-triton"]["spec"]["template"]
    assert triton["spec"]["runtimeClassName"] == "nvidia"
    assert triton["metadata"]["annotations"] == {"example.com/gpu": "shared"}
    assert triton["spec"]["containers"][0]["image"] == "registry.mirror.example.com/nvidia/tritonserver:24.08-py3"
    assert {"name": "TRITON_AWS_MOUNT_DIRECTORY", "value": "/tmp/triton-s3"} in triton["spec"]["containers"][0]["env"]
    bundled = deployments["vl-visionloop-postgresql"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert bundled == "registry.mirror.example.com/library/postgres:16.4-bookworm"
    test_pod = by_kind(documents, "Pod")["vl-visionloop-test"]["spec"]
    assert test_pod["containers"][0]["image"] == container["image"]


def test_default_images_name_their_registry() -> None:
    specs = pod_specs(render(minimal()))
    assert specs["vl-visionloop-detector"]["containers"][0]["image"] == "ghcr.io/visionloop/visionloop:0.1.0"
    assert specs["vl-visionloop-trainer"]["containers"][0]["image"] == "ghcr.io/visionloop/visionloop-trainer:0.1.0"
    assert "imagePullSecrets" not in specs["vl-visionloop-detector"]


def test_env_values_replace_the_charts_own_entry() -> None:
    values = minimal()
    values["detector"].update(env={"DETECTOR_MAX_BATCH_SIZE": 8}, extraEnv=[{"name": "LOOP_PROJECT", "value": "cams"}])
    env = pod_specs(render(values))["vl-visionloop-detector"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "DETECTOR_MAX_BATCH_SIZE"] == [
        {"name": "DETECTOR_MAX_BATCH_SIZE", "value": "8"}
    ]
    assert [e for e in env if e["name"] == "LOOP_PROJECT"] == [{"name": "LOOP_PROJECT", "value": "cams"}]


def test_services_take_annotations_and_load_balancer_fields() -> None:
    services = by_kind(render(load_values(CHART / "ci" / "full-values.yaml")), "Service")
    detector = services["vl-visionloop-detector"]
    assert detector["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    assert detector["metadata"]["labels"]["example.com/exposed"] == "robots"
    assert detector["spec"]["type"] == "LoadBalancer"
    assert detector["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert detector["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]
    assert detector["spec"]["externalTrafficPolicy"] == "Local"
    assert "annotations" not in services["vl-visionloop-trainer"]["metadata"]
    assert services["vl-visionloop-trainer"]["spec"]["type"] == "ClusterIP"


def test_robots_outside_the_cluster_reach_services_through_ingress_and_grpc_route() -> None:
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    ingresses = by_kind(documents, "Ingress")
    assert set(ingresses) == {"vl-visionloop-loop", "vl-visionloop-detector"}
    detector = ingresses["vl-visionloop-detector"]
    # TLS to the pods: ingress-nginx must speak gRPC over TLS to them
    assert detector["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPCS"
    assert detector["spec"]["ingressClassName"] == "nginx"
    rule = detector["spec"]["rules"][0]
    assert rule["host"] == "detector.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "vl-visionloop-detector",
        "port": {"name": "grpc"},
    }
    routes = by_kind(documents, "GRPCRoute")
    assert set(routes) == {"vl-visionloop-detector", "vl-visionloop-annotator"}
    assert routes["vl-visionloop-detector"]["spec"]["rules"] == [
        {"backendRefs": [{"name": "vl-visionloop-detector", "port": 50052}]}
    ]
    policies = by_kind(documents, "NetworkPolicy")
    controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    for name in ("loop", "detector", "annotator"):
        assert controller in policies[f"vl-visionloop-{name}"]["spec"]["ingress"][0]["from"], name
    for name in ("trainer", "converter"):
        assert controller not in policies[f"vl-visionloop-{name}"]["spec"]["ingress"][0]["from"], name
    text = notes(load_values(CHART / "ci" / "full-values.yaml"))
    assert "robots' client certificates end at the Ingress controller" in text
    assert "the Gateway needs a BackendTLSPolicy" in text
    plain = minimal()
    plain["detector"]["ingress"] = {"enabled": True, "hosts": ["d.example.com"]}
    ingress = by_kind(render(plain), "Ingress")["vl-visionloop-detector"]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"


def test_detectors_close_connections_past_a_maximum_age() -> None:
    """Robots hold one connection: the detectors' maximum age moves them over replicas the HPA adds."""
    values = copy.deepcopy(minimal())
    documents = render(values)
    for name, spec in pod_specs(documents).items():
        env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}
        if name == "vl-visionloop-detector":
            assert env["VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS"] == "300"
            assert env["VISIONLOOP_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS"] == "30"
        else:
            assert "VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS" not in env, name
        if name != "vl-visionloop-test":
            assert env["VISIONLOOP_GRPC_KEEPALIVE_SECONDS"] == "60", name
    values["detector"]["autoscaling"] = {"enabled": True}
    values["detector"]["connections"] = {"maxAgeSeconds": 0}
    assert "pods added later get no traffic from them" in notes(values)
    values["detector"]["connections"] = {"maxAgeSeconds": 0.5}
    with pytest.raises(helm.HelmError, match="maxAgeSeconds"):
        render(values)


def test_notes_name_what_the_certificate_must_cover() -> None:
    text = notes(load_values(CHART / "ci" / "gpu-values.yaml"))
    for service in SERVICES:
        assert f"vl-visionloop-{service}, vl-visionloop-{service}.vision.svc" in text
    assert "plaintext health port 50060" in text


def test_the_label_studio_bridge_is_served_and_reached_with_its_credential() -> None:
    values = minimal()
    values["annotator"] = {"labelStudio": {"enabled": True, "port": 9092, "token": "label-studio-bridge-credential"}}
    values["networkPolicy"] = {"enabled": True}
    documents = render(values)
    name = "vl-visionloop-annotator"
    container = by_kind(documents, "Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "label-studio", "containerPort": 9092, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e for e in container["env"]}
    assert env["LABEL_STUDIO_PORT"]["value"] == "9092"
    reference = env["LABEL_STUDIO_BRIDGE_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = by_kind(documents, "Secret")[reference["name"]]
    assert secret["stringData"][reference["key"]] == "label-studio-bridge-credential"
    service = by_kind(documents, "Service")[name]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == "label-studio"]
    assert (port["port"], port["targetPort"]) == (9092, "label-studio")
    policy = by_kind(documents, "NetworkPolicy")[name]
    assert {"port": "label-studio", "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]

    values["annotator"]["labelStudio"] = {"enabled": True, "port": 9092, "existingSecret": "studio"}
    container = by_kind(render(values), "Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["LABEL_STUDIO_BRIDGE_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "studio",
        "key": "label-studio-bridge-token",
    }

"""The Helm chart: strict lint, offline rendering for several value files, Kubernetes schema validation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import ALERTS, CHART, DASHBOARDS, accepted_env, validate_settings
from visionloop.runtime.access import Scope, Tokens, parse_tokens

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
    "database-url": "postgresql://u:p@db:5432/visionloop",
    "s3-access-key-id": "key",
    "s3-secret-access-key": "secret",
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
    _, documents = rendered
    deployments = by_kind(documents, "Deployment")
    for service in SERVICES:
        container = deployments[f"vl-visionloop-{service}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", service]
        grpc_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == grpc_port


def test_rendered_environment_is_what_each_service_accepts(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    deployments = by_kind(documents, "Deployment")
    for service in SERVICES:
        container = deployments[f"vl-visionloop-{service}"]["spec"]["template"]["spec"]["containers"][0]
        names = [e["name"] for e in container["env"]]
        assert len(names) == len(set(names)), f"{service}: duplicate variables"
        unknown = set(names) - accepted_env(service)
        assert not unknown, f"{service} does not read {sorted(unknown)}"
        env = {
            e["name"]: e["value"] if "value" in e else SECRET_SAMPLES[e["valueFrom"]["secretKeyRef"]["key"]]
            for e in container["env"]
        }
        validate_settings(service, env)


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
    assert "--model-repository=s3://https://s3.eu-central-1.amazonaws.com/acme-visionloop/triton" in triton["args"]
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
        keys = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
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
    assert len(auth["detector-token"]) == 40
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
    assert (CHART / "files" / "alerts.yml").read_text() == ALERTS.read_text(), "copy deploy/prometheus/alerts.yml"
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    rule = by_kind(documents, "PrometheusRule")["vl-visionloop"]
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    subprocess.run(["promtool", "check", "rules", str(rules_file)], check=True, capture_output=True)


def test_dashboards_ship_as_config_maps() -> None:
    shipped = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    copies = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
    assert len(shipped) == 5
    assert shipped == copies, "copy deploy/grafana/dashboards/*.json to charts/visionloop/files/dashboards/"
    for name in shipped:
        assert (CHART / "files" / "dashboards" / name).read_text() == (DASHBOARDS / name).read_text(), name
    documents = render(load_values(CHART / "ci" / "full-values.yaml"))
    maps = [d for d in by_kind(documents, "ConfigMap").values() if d["metadata"]["labels"].get("grafana_dashboard")]
    assert sorted(name for m in maps for name in m["data"]) == shipped
    for config_map in maps:
        for name, text in config_map["data"].items():
            assert json.loads(text) == json.loads((DASHBOARDS / name).read_text())

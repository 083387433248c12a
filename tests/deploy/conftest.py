"""Shared helpers of the deployment tests: the repository's deploy files and the settings services accept."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from visionloop.server.catalog import SERVICES
from visionloop.testing.certs import Pki, make_pki

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "visionloop"
DEPLOY = REPO / "deploy"
# The one copy of the dashboards and alert rules: inside the chart, the only place Helm reads files from.
DASHBOARDS = CHART / "files" / "dashboards"
ALERTS = CHART / "files" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"


def rule_files(config: Path) -> list[Path]:
    """The rule files a Prometheus (or promtool test) configuration loads, resolved as Prometheus does:
    relative to the configuration file's folder."""
    return [(config.parent / name).resolve() for name in yaml.safe_load(config.read_text())["rule_files"]]


@functools.cache
def accepted_env(service: str) -> frozenset[str]:
    """Environment variable names ``visionloop serve SERVICE`` reads (what ``visionloop settings`` lists)."""
    settings = SERVICES[service].load().SETTINGS
    return frozenset(field.alias or name.upper() for name, field in settings.model_fields.items())


def validate_settings(service: str, env: dict[str, str]) -> None:
    """Build the service's settings from ``env`` exactly as start-up does; raises on a bad value."""
    settings = SERVICES[service].load().SETTINGS
    settings(**env)


def chart_pki(
    folder: Path, fullname: str = "vl-visionloop", namespace: str = "vision"
) -> tuple[Pki, dict[str, dict[str, bytes]]]:
    """Certificates for the chart's TLS values, and the Secrets holding them (name -> key -> bytes), laid
    out as cert-manager writes them: visionloop-tls (the services' certificate, named after every
    Service and localhost) and visionloop-node-tls (a client certificate, for tls.clientSecret)."""
    names = [f"{fullname}-{c}{suffix}" for c in SERVICES for suffix in ("", f".{namespace}.svc")]
    pki = make_pki(folder, server_names=names)
    ca = pki.ca.read_bytes()
    secrets = {
        "visionloop-tls": {
            "tls.crt": pki.server_cert.read_bytes(),
            "tls.key": pki.server_key.read_bytes(),
            "ca.crt": ca,
        },
        "visionloop-node-tls": {"tls.crt": pki.client_cert.read_bytes(), "tls.key": pki.client_key.read_bytes()},
    }
    return pki, secrets


def materialize(
    pod: dict[str, Any],
    container: dict[str, Any],
    root: Path,
    secrets: dict[str, dict[str, bytes]],
    secret_values: dict[str, str],
) -> dict[str, str]:
    """The container's environment as its process would see it, with ``root`` standing for ``/``: each
    Secret volume it mounts written under ``root`` (its items, at its mount path), and every variable
    naming a file below such a mount pointed there. ``secret_values``: Secret or ConfigMap key -> value."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts: list[str] = []
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        folder = root / mount["mountPath"].lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        data = secrets[secret["secretName"]]
        for item in secret.get("items") or [{"key": key, "path": key} for key in data]:
            (folder / item["path"]).write_bytes(data[item["key"]])
        mounts.append(mount["mountPath"].rstrip("/") + "/")
    env: dict[str, str] = {}
    for variable in container.get("env", []):
        if "value" in variable:
            value = variable["value"]
            if any(value.startswith(prefix) for prefix in mounts):
                value = str(root / value.lstrip("/"))
        else:
            source = variable["valueFrom"]
            value = secret_values[(source.get("secretKeyRef") or source["configMapKeyRef"])["key"]]
        env[variable["name"]] = value
    return env


# PromQL words that are not metric names.
_PROMQL_WORDS = frozenset(
    ["by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf"]
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords and label names left out)."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = _GROUPING.sub("", expr)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(expr)
        if not match.group(2) and match.group(1) not in _PROMQL_WORDS
    }


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) for every panel target and templating query of every dashboard."""
    queries: list[tuple[str, str]] = []
    for name, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                queries.append((f"{name}: {panel['title']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
                assert inner, variable["definition"]
                queries.append((f"{name}: ${variable['name']}", inner.group(1)))
    return queries


def alert_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(f"alert {rule['alert']}", rule["expr"]) for group in groups for rule in group["rules"]]


def exported_names(exposition: str) -> set[str]:
    """Series names a /metrics page can produce, from its TYPE lines (labelled metrics show none before use)."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names

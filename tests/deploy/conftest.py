"""Shared helpers of the deployment tests: the repository's deploy files and the settings services accept."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from visionloop.services import SERVICES

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "visionloop"
DEPLOY = REPO / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"


@functools.cache
def accepted_env(service: str) -> frozenset[str]:
    """Environment variable names ``visionloop serve SERVICE`` reads (what ``visionloop settings`` lists)."""
    settings = SERVICES[service].load().SETTINGS
    return frozenset(field.alias or name.upper() for name, field in settings.model_fields.items())


def validate_settings(service: str, env: dict[str, str]) -> None:
    """Build the service's settings from ``env`` exactly as start-up does; raises on a bad value."""
    settings = SERVICES[service].load().SETTINGS
    settings(**env)


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

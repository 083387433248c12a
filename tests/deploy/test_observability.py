"""Dashboards and alert rules query only metrics a running VisionLoop exports, and the shipped
Prometheus configuration scrapes a running ``visionloop up`` with a real Prometheus server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from tests.deploy.conftest import (
    ALERTS,
    DASHBOARDS,
    PROMETHEUS_CONFIG,
    REPO,
    RULE_TESTS,
    alert_queries,
    dashboard_queries,
    dashboards,
    exported_names,
    metric_names,
    rule_files,
)
from tests.harness import SERVING, ServiceProcess, health_status, visionloop
from visionloop.server.catalog import SERVICES

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# Series Prometheus makes itself, and Triton's, checked against a running Triton (test_triton_metrics.py).
NOT_OURS = {"up"}


def test_dashboards_have_stable_uids_and_a_datasource_variable() -> None:
    found = dashboards()
    assert {d["uid"] for d in found.values()} == {
        "visionloop-overview",
        "visionloop-detector",
        "visionloop-trainer",
        "visionloop-triton",
        "visionloop-hub",
    }
    for name, dashboard in found.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        assert dashboard["panels"], name
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", (name, panel["title"])


def repository_files(suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Files of the checkout with these suffixes, outside hidden folders (.git, .venv*) and node_modules."""
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if not name.startswith(".") and name != "node_modules"]
        yield from (Path(folder) / name for name in files if Path(name).suffix in suffixes)


def test_the_dashboards_and_alert_rules_have_one_copy_which_prometheus_loads() -> None:
    """The chart's files are the only copy: the shipped Prometheus configuration (compose's, and one run from
    a checkout) and the rule tests load exactly them, and no other file holds a dashboard or the rules."""
    assert rule_files(PROMETHEUS_CONFIG) == [ALERTS]
    assert rule_files(RULE_TESTS) == [ALERTS]
    uids = {d["uid"] for d in dashboards().values()}
    alerts = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    copies = []
    for path in repository_files((".json",)):
        try:
            document = json.loads(path.read_text())
        except ValueError:
            continue
        if path.parent != DASHBOARDS and isinstance(document, dict) and document.get("uid") in uids:
            copies.append(path)
    for path in repository_files((".yml", ".yaml")):
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError:  # Helm templates
            continue
        groups = document.get("groups") if isinstance(document, dict) else None
        named = {rule.get("alert") for group in groups or [] for rule in group.get("rules", [])}
        if path != ALERTS and alerts & named:
            copies.append(path)
    assert not copies, f"keep the dashboards in {DASHBOARDS} and the rules in {ALERTS} only: {copies}"


def test_the_dashboards_cover_what_the_issue_asks_for() -> None:
    queried = {
        name: set().union(*(metric_names(t["expr"]) for p in d["panels"] for t in p.get("targets", [])))
        for name, d in dashboards().items()
    }
    assert {"grpc_server_handled_total", "grpc_server_handling_seconds_bucket"} <= queried["overview.json"]
    assert {
        "visionloop_detector_stage_seconds_bucket",
        "visionloop_detector_batch_size_bucket",
        "visionloop_detector_frames_total",
        "visionloop_detector_uploads_total",
        "visionloop_outbox_items",
        "visionloop_detector_model_info",
    } <= queried["detector.json"]
    assert {
        "visionloop_trainer_state",
        "visionloop_trainer_progress",
        "visionloop_trainer_loss",
        "visionloop_trainer_map50",
    } <= queried["trainer.json"]
    assert all(name.startswith("nv_inference_") for name in queried["triton.json"])
    assert {"visionloop_hub_images", "visionloop_hub_trainings", "visionloop_hub_image_bytes"} <= queried["hub.json"]


def test_metric_names_reads_promql() -> None:
    expr = 'sum by (job, le) (rate(a_bucket{x="rate(b)", y=~"c"}[5m])) / on (job) group_left(z) d_total > 1e-9'
    assert metric_names(expr) == {"a_bucket", "d_total"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, int]]:
    """One ``visionloop up`` for the module: (process, metrics port)."""
    tmp_path = tmp_path_factory.mktemp("up")
    args = ("up", "--base-port", "0", "--metrics-port", "0")
    with visionloop(*args, tmp_path=tmp_path, count=len(SERVICES)) as proc:
        port = proc.metrics_port()
        for service_port in proc.ports().values():
            with grpc.insecure_channel(f"127.0.0.1:{service_port}") as channel:
                assert health_status(channel) == SERVING
        yield proc, port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.slow
def test_every_metric_a_dashboard_or_rule_queries_is_exported(running: tuple[ServiceProcess, int]) -> None:
    _, port = running
    exported = exported_names(scrape(port))
    assert "visionloop_detector_frames_total" in exported  # labelled, no samples yet: known from its TYPE line
    assert "visionloop_no_such_metric" not in exported
    missing = {
        (where, name)
        for where, expr in dashboard_queries() + alert_queries()
        for name in metric_names(expr)
        if name not in exported and name not in NOT_OURS and not name.startswith("nv_")
    }
    assert not missing, sorted(missing)


def prometheus_config(tmp_path: Path, metrics_port: int) -> Path:
    """The shipped configuration with every VisionLoop job pointed at the one ``up`` endpoint; its rule
    files, relative to the shipped configuration, resolved where they are."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] in SERVICES:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
            jobs.append(job)
    config["scrape_configs"] = jobs
    config["rule_files"] = [str(path) for path in rule_files(PROMETHEUS_CONFIG)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.mark.slow
def test_prometheus_scrapes_visionloop_up_with_the_shipped_config(
    running: tuple[ServiceProcess, int], tmp_path: Path
) -> None:
    proc, metrics_port = running
    for service_port in proc.ports().values():  # calls the request counter will show
        with grpc.insecure_channel(f"127.0.0.1:{service_port}") as channel:
            health_status(channel)
    port = free_port()
    config = prometheus_config(tmp_path, metrics_port)
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    server = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        result: list[dict[str, Any]] = []
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                query = 'grpc_server_handled_total{grpc_service="grpc.health.v1.Health", job="loop"}'
                result = api(port, "query", query=query)["result"]
                targets = api(port, "targets")["activeTargets"]
            except OSError:
                pass
            if result and targets and all(t["health"] == "up" for t in targets):
                break
            time.sleep(0.5)
        assert result, "Prometheus never returned the request counter"
        assert float(result[0]["value"][1]) >= 1
        assert {t["labels"]["job"] for t in targets} == set(SERVICES)
        assert all(t["health"] == "up" for t in targets), [(t["scrapePool"], t["health"]) for t in targets]
        rules = [r["name"] for g in api(port, "rules")["groups"] for r in g["rules"]]
        assert "VisionLoopServiceDown" in rules
        # every dashboard query is valid PromQL for this Prometheus
        for where, expr in dashboard_queries():
            query = expr.replace("$__rate_interval", "1m").replace("$triton_job", ".*").replace("$job", ".*")
            api(port, "query", query=query)
            assert where
    finally:
        server.terminate()
        server.wait(timeout=30)

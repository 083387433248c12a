"""docker-compose.yml and the Dockerfiles agree with what the CLI and the configuration accept.

No Docker engine runs here, so the checks read the files: commands are ``visionloop`` commands,
ports are the ones the services bind, every environment variable is one the service reads and
its value passes the service's own validation.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.deploy.conftest import (
    ALERTS,
    DASHBOARDS,
    DEPLOY,
    PROMETHEUS_CONFIG,
    REPO,
    accepted_env,
    rule_files,
    validate_settings,
)
from visionloop.cli.main import cli
from visionloop.cli.tokens import CREDENTIALS
from visionloop.runtime.access import Scope, Tokens, parse_tokens
from visionloop.server.catalog import SERVICES

COMPOSE = REPO / "docker-compose.yml"
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}")


class ComposeLoader(yaml.SafeLoader):
    """YAML with compose's ``!reset`` / ``!override`` tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: None)
ComposeLoader.add_constructor(
    "!override", lambda loader, node: loader.construct_object(node.value if hasattr(node, "value") else node)
)


def load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def interpolate(value: Any, env: dict[str, str] | None = None) -> str:
    """Compose's ``${NAME:-default}`` with ``env`` (default: nothing) set in the environment."""
    env = env or {}
    return _INTERPOLATION.sub(lambda m: env.get(m.group("name")) or m.group("default") or "", str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


def visionloop_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if s.get("command", [None])[0] == "serve"}


def test_compose_runs_the_cluster_shape(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= {"minio", "minio-init", "postgres", "triton", "prometheus", "grafana"}
    assert set(visionloop_services(compose)) == set(SERVICES)


def test_commands_are_visionloop_serve_service(compose: dict[str, Any]) -> None:
    serve = cli.commands["serve"]
    choices = next(p.type.choices for p in serve.params if p.name == "service")
    runner = CliRunner()
    for name, service in visionloop_services(compose).items():
        command = service["command"]
        assert command == ["serve", name]
        assert name in choices
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["serve", "nonsense"])
    assert result.exit_code == 2, "the CLI refuses an unknown service"


def test_ports_match_what_the_services_bind(compose: dict[str, Any]) -> None:
    for name, service in visionloop_services(compose).items():
        entry = SERVICES[name]
        env = service["environment"]
        assert int(env["VISIONLOOP_PORT"]) == entry.grpc_port
        assert int(env["VISIONLOOP_METRICS_PORT"]) == entry.metrics_port
        assert env["VISIONLOOP_HOST"] == "0.0.0.0"
        for mapping in service["ports"]:
            host, container = str(mapping).split(":")
            assert int(container) == entry.grpc_port
            assert host == container


def test_environment_is_what_each_service_reads_and_validates(compose: dict[str, Any]) -> None:
    for name, service in visionloop_services(compose).items():
        env = {key: interpolate(value) for key, value in service["environment"].items()}
        unknown = set(env) - accepted_env(name)
        assert not unknown, f"{name} does not read {sorted(unknown)}"
        validate_settings(name, env)
        if name != "loop":
            loop = SERVICES["loop"]
            assert env["LOOP_HOST"] == f"loop:{loop.grpc_port}"


def test_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in visionloop_services(compose).items():
        assert "grpc_health" in " ".join(service["healthcheck"]["test"])
        assert "VISIONLOOP_PORT" in " ".join(service["healthcheck"]["test"])
        assert service["read_only"] is True
        assert service["user"] == "10001:10001"
        if name != "loop":
            assert service["depends_on"]["loop"] == {"condition": "service_healthy"}
    assert services["loop"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    for name in ("minio", "postgres", "triton", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], (name, dependency)


def test_loop_database_and_storage_point_at_compose_services(compose: dict[str, Any]) -> None:
    env = {k: interpolate(v) for k, v in compose["services"]["loop"]["environment"].items()}
    assert env["DATABASE_URL"] == "postgresql://visionloop:visionloop@postgres:5432/visionloop"
    assert env["S3_ENDPOINT"] == "http://minio:9000"
    minio = {k: interpolate(v) for k, v in compose["services"]["minio"]["environment"].items()}
    assert (env["S3_ACCESS_KEY_ID"], env["S3_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    assert "local/visionloop" in " ".join(compose["services"]["minio-init"]["entrypoint"])


def test_triton_serves_the_s3_repository_with_explicit_control_and_gpus_can_be_removed(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    command = triton["command"]
    assert "--model-control-mode=explicit" in command
    assert "--model-repository=s3://http://minio:9000/visionloop/triton" in command
    detector = compose["services"]["detector"]["environment"]
    assert f"--model-repository={detector['TRITON_MODEL_REPOSITORY']}" in command
    assert detector["TRITON_URL"] == "triton:8001"
    for name in ("triton", "trainer"):
        reservation = compose["services"][name]["deploy"]["resources"]["reservations"]["devices"][0]
        assert reservation["capabilities"] == ["gpu"], name
    override = load(DEPLOY / "compose" / "no-gpu.yml")
    assert override == {"services": {"triton": {"deploy": None}, "trainer": {"deploy": None}}}


def test_prometheus_scrapes_every_compose_service_on_its_metrics_port(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    for name in visionloop_services(compose):
        assert targets[name] == [f"{name}:{SERVICES[name].metrics_port}"]
    assert targets["triton"] == ["triton:8002"]
    assert "--metrics-port=8002" in compose["services"]["triton"]["command"]


def host_path(service: dict[str, Any], inside: str) -> Path:
    """The checkout's file or folder a container sees at ``inside``, through the service's read-only bind
    mounts (the deepest mount holding it)."""
    inside = posixpath.normpath(inside)
    mounts = {}
    for volume in service["volumes"]:
        if volume.startswith("./"):
            source, target, mode = volume.split(":")
            assert mode == "ro", volume
            mounts[target] = REPO / source
    below = [target for target in mounts if inside == target or inside.startswith(target + "/")]
    assert below, f"nothing is mounted at {inside}"
    target = max(below, key=len)
    return (mounts[target] / Path(inside).relative_to(target)).resolve()


def test_prometheus_loads_the_repository_config_and_the_charts_alert_rules(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    (option,) = [c for c in prometheus["command"] if c.startswith("--config.file=")]
    inside = option.removeprefix("--config.file=")
    assert host_path(prometheus, inside) == PROMETHEUS_CONFIG
    # rule files are relative to the configuration, inside the container as in the checkout
    for name in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]:
        assert host_path(prometheus, posixpath.join(posixpath.dirname(inside), name)) == ALERTS
    assert rule_files(PROMETHEUS_CONFIG) == [ALERTS]


def test_grafana_is_provisioned_from_the_repository(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "visionloop.yml").read_text())
    assert host_path(grafana, "/etc/grafana/provisioning") == DEPLOY / "grafana" / "provisioning"
    assert host_path(grafana, provider["providers"][0]["options"]["path"]) == DASHBOARDS  # the chart's copy
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home).is_file()
    assert host_path(grafana, home).parent == DASHBOARDS


def test_images_build_from_the_repository_dockerfiles(compose: dict[str, Any]) -> None:
    for name, service in visionloop_services(compose).items():
        dockerfile = REPO / service["build"]["dockerfile"]
        assert dockerfile.is_file(), name
        assert ("trainer" in dockerfile.name) == (name == "trainer"), name


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.trainer"])
def test_dockerfiles_are_multi_stage_pinned_non_root_with_exec_entrypoints(name: str) -> None:
    text = (DEPLOY / "docker" / name).read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert bases == ["python:3.11.10-slim-bookworm"], "pinned base"
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2, "multi-stage"
    assert "latest" not in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["visionloop"\]$', text, re.M)
    command = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert command
    args = yaml.safe_load(command.group(1))
    assert args[0] == "serve"
    assert args[1] in SERVICES
    assert ("torch" in text or "trainer" in text) if name.endswith("trainer") else "[trainer]" not in text
    for path in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / path).exists(), path


def test_each_node_gets_its_own_kinds_token_and_no_service_holds_the_admin_token(compose: dict[str, Any]) -> None:
    """With the .env `visionloop tokens` writes, as the compose file's header says."""
    result = CliRunner().invoke(cli, ["tokens", "--project", "demo/demo"])
    assert result.exit_code == 0, result.output
    dotenv = dict(line.split("=", 1) for line in result.output.splitlines() if line and not line.startswith("#"))
    by_role = {c.role: dotenv[c.env] for c in CREDENTIALS}
    assert len(set(by_role.values())) == len(CREDENTIALS)
    own = {name: f"{name}_node" for name in ("detector", "trainer", "converter", "annotator")}
    for name, service in visionloop_services(compose).items():
        env = {key: interpolate(value, dotenv) for key, value in service["environment"].items()}
        validate_settings(name, env)
        for role, token in by_role.items():
            # Every service recognises every token, by its digest: no token is in its environment but its own.
            assert token not in env["VISIONLOOP_AUTH_TOKENS"], (name, role)
            assert [g.role for g in Tokens(parse_tokens(env["VISIONLOOP_AUTH_TOKENS"])).grants_of(token)] == [role]
        if name == "loop":
            assert "LOOP_TOKEN" not in env
            continue
        assert env["LOOP_TOKEN"] == by_role[own[name]], name
        assert by_role["admin"] not in env.values(), name
    accepted = Tokens(parse_tokens(dotenv["VISIONLOOP_AUTH_TOKENS"]))
    (detector,) = accepted.grants_of(by_role["detector_node"])
    assert detector.scope == Scope("demo", "demo")  # a detector serves one project
    (converter,) = accepted.grants_of(by_role["converter_node"])
    assert converter.scope is None  # a converter may convert every project's models


def test_the_label_studio_overlay_serves_the_bridge_beside_a_label_studio(compose: dict[str, Any]) -> None:
    overlay = load(DEPLOY / "compose" / "label-studio.yml")
    annotator = overlay["services"]["annotator"]
    token = "0123456789abcdef0123"
    env = {**compose["services"]["annotator"]["environment"], **annotator["environment"]}
    given = {"LABEL_STUDIO_BRIDGE_TOKEN": token}
    required = re.compile(r"\$\{(\w+):\?[^}]*\}")
    env = {key: interpolate(required.sub(lambda m: given[m.group(1)], str(value))) for key, value in env.items()}
    assert not set(env) - accepted_env("annotator")
    validate_settings("annotator", env)
    assert env["LABEL_STUDIO_BRIDGE_TOKEN"] == token
    assert f"{env['LABEL_STUDIO_PORT']}:{env['LABEL_STUDIO_PORT']}" in annotator["ports"]
    assert required.search(annotator["environment"]["LABEL_STUDIO_BRIDGE_TOKEN"]), "no bridge without its credential"
    studio = overlay["services"]["label-studio"]
    # Label Studio refuses a bridge on a private address unless these are off.
    assert studio["environment"]["ML_BLOCK_LOCAL_IP"] == "false"
    assert studio["environment"]["SSRF_PROTECTION_ENABLED"] == "false"
    assert studio["image"].startswith("heartexlabs/label-studio:1.23.")
    # Without the overlay the bridge is off, and the annotator starts without its credential.
    assert "LABEL_STUDIO_PORT" not in compose["services"]["annotator"]["environment"]

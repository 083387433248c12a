"""``visionloop`` command line: run one service, or all of them in one process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import structlog

from visionloop.cli import demo as demo_commands
from visionloop.cli import hub_commands
from visionloop.cli.annotate import annotate, label_studio
from visionloop.cli.detect import detect
from visionloop.cli.tokens import tokens
from visionloop.runtime import __version__
from visionloop.runtime.config import ConfigError, ServiceSettings
from visionloop.runtime.logging import configure_logging
from visionloop.runtime.server import GrpcServer, run
from visionloop.server.catalog import SERVICES, ServiceEntry
from visionloop.server.embedded import embedded, service_settings


def _settings(entry: ServiceEntry, **overrides: Any) -> ServiceSettings:
    """``_load``, exiting with the one-line message on a bad setting."""
    try:
        return service_settings(entry, **overrides)
    except ConfigError as error:
        click.echo(f"visionloop {entry.name}: {error}", err=True)
        sys.exit(2)


def _run(builders: Sequence[Callable[[], GrpcServer]], settings: ServiceSettings, **kwargs: Any) -> None:
    configure_logging(settings.log_format, settings.log_level)
    try:
        code = asyncio.run(run(builders, metrics_host=settings.host, **kwargs))
    except OSError as error:
        click.echo(f"visionloop: {error}", err=True)
        code = 1
    except Exception as error:  # a start hook failed (e.g. a model that cannot load): say so in one line
        structlog.stdlib.get_logger("visionloop").exception("start failed")
        click.echo(f"visionloop: cannot start: {error}", err=True)
        code = 1
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="visionloop")
def cli() -> None:
    """VisionLoop: an open active-learning loop for robot vision.

    Every option can also be set through the environment (see `visionloop settings SERVICE`).
    """


@cli.command()
@click.argument("service", type=click.Choice(list(SERVICES)))
@click.option("--host", help="Address to bind [env VISIONLOOP_HOST, default 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="gRPC port, 0 for a free one [env VISIONLOOP_PORT].")
@click.option(
    "--metrics-port", type=click.IntRange(-1, 65535), help="/metrics port, -1 off [env VISIONLOOP_METRICS_PORT]."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Local state folder [env VISIONLOOP_DATA_DIR].")
@click.option("--loop-host", help="Hub address host:port for nodes [env LOOP_HOST].")
def serve(
    service: str,
    host: str | None,
    port: int | None,
    metrics_port: int | None,
    data_dir: Path | None,
    loop_host: str | None,
) -> None:
    """Run one SERVICE: loop, detector, trainer, converter or annotator."""
    entry = SERVICES[service]
    settings = _settings(entry, host=host, port=port, metrics_port=metrics_port, data_dir=data_dir, loop_host=loop_host)
    module = entry.load()
    _run([lambda: GrpcServer(module.create(settings), settings)], settings, metrics_port=settings.metrics_port)


@cli.command()
@click.option("--host", help="Address every service binds [env VISIONLOOP_HOST, default 127.0.0.1].")
@click.option(
    "--base-port",
    type=click.IntRange(0, 65530),
    default=50051,
    show_default=True,
    help="loop gets this port, then detector, trainer, converter, annotator; 0 picks free ports.",
)
@click.option("--metrics-port", type=click.IntRange(-1, 65535), default=9090, show_default=True, help="/metrics port.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="State folder, one sub-folder per service.")
def up(host: str | None, base_port: int, metrics_port: int, data_dir: Path | None) -> None:
    """Run all services in one process on the embedded default (SQLite, local files, ONNX Runtime)."""
    try:
        all_settings, builders = embedded(host=host, base_port=base_port, data_dir=data_dir)
    except ConfigError as error:
        click.echo(f"visionloop up: {error}", err=True)
        sys.exit(2)

    def ready(started: Sequence[GrpcServer], bound_metrics_port: int | None) -> None:
        lines = ["VisionLoop is up (embedded mode):"]
        for server in started:
            entry = SERVICES[server.spec.name]
            lines.append(f"  {entry.name:<10} grpc://{server.address:<22} {entry.summary}")
        if bound_metrics_port is not None:
            lines.append(f"  {'metrics':<10} http://{started[0].settings.host}:{bound_metrics_port}/metrics")
        lines.append("Stop with Ctrl+C (or SIGTERM).")
        click.echo("\n".join(lines), err=True)

    _run(
        builders,
        all_settings[0],
        metrics_port=metrics_port,
        on_ready=ready,
    )


@cli.command("settings")
@click.argument("service", type=click.Choice(list(SERVICES)))
def settings_command(service: str) -> None:
    """List the environment variables SERVICE reads, with defaults and meaning."""
    cls = SERVICES[service].load().SETTINGS
    rows = []
    for name, field in cls.model_fields.items():
        default = "" if field.is_required() else field.get_default(call_default_factory=True)
        if default is None:
            default = ""
        rows.append((field.alias or name.upper(), str(default), field.description or ""))
    width = max(len(r[0]) for r in rows)
    for env, default, description in rows:
        shown = f" (default: {default})" if default != "" else ""
        click.echo(f"{env:<{width}}  {description}{shown}")


for _command in hub_commands.COMMANDS:
    cli.add_command(_command)
cli.add_command(detect)
cli.add_command(tokens)
cli.add_command(annotate)
cli.add_command(label_studio)
cli.add_command(demo_commands.demo)
cli.add_command(demo_commands.experiment)


def main() -> None:
    cli(prog_name="visionloop")


if __name__ == "__main__":
    main()

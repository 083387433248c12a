"""Services that share one process (``visionloop up``, ``visionloop demo``): their settings and builders."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from visionloop.runtime.config import ConfigError, PeerSettings, ServiceSettings, load_settings
from visionloop.runtime.server import GrpcServer
from visionloop.server.catalog import SERVICES, ServiceEntry

_LOCAL_HOSTS = {"0.0.0.0", "127.0.0.1", "::", "[::]", "localhost"}


def service_settings(entry: ServiceEntry, **overrides: Any) -> ServiceSettings:
    """Validated settings for ``entry``: flags > environment > the service's well-known ports; raises ConfigError."""
    settings = load_settings(entry.load().SETTINGS, **overrides)
    defaults: dict[str, int] = {}
    if settings.port is None:
        defaults["port"] = entry.grpc_port
    if settings.metrics_port is None:
        defaults["metrics_port"] = entry.metrics_port
    return settings.model_copy(update=defaults)


def embedded(
    names: Sequence[str] = tuple(SERVICES),
    *,
    host: str | None = None,
    base_port: int = 0,
    data_dir: Path | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[ServiceSettings], list[Callable[[], GrpcServer]]]:
    """Settings and builders of services that share one process (``visionloop up``, ``visionloop demo``).

    ``names`` in start order, the hub first: each builder runs right before its server starts, so
    every node is pointed at the port the hub bound. A service gets the ``base_port + n``-th port (0:
    free ports) and its own folder under the data folder; ``overrides`` (service name -> settings)
    win over flags and the environment. Raises ``ConfigError`` naming the service.
    """
    peer = load_settings(PeerSettings)
    entries = [SERVICES[name] for name in names]
    all_settings: list[ServiceSettings] = []
    for offset, entry in enumerate(entries):
        values: dict[str, Any] = {
            "host": host,
            "port": base_port + offset if base_port else 0,
            "data_dir": data_dir,
            "bootstrap_project": f"{peer.loop_organization}/{peer.loop_project}",  # nodes find their project at once
            **(overrides or {}).get(entry.name, {}),
        }
        try:
            settings = service_settings(entry, **values)
        except ConfigError as error:
            raise ConfigError(f"{entry.name}: {error}") from None
        # One process: a health port from the environment would be bound once per service.
        own = {"data_dir": settings.data_dir / entry.name, "health_port": None}
        all_settings.append(settings.model_copy(update=own))
    servers: list[GrpcServer] = []

    def builder(entry: ServiceEntry, settings: ServiceSettings) -> Callable[[], GrpcServer]:
        def build() -> GrpcServer:
            if servers and hasattr(settings, "loop_host"):  # point nodes at the hub started first
                hub = servers[0]
                hub_host = "127.0.0.1" if hub.settings.host in _LOCAL_HOSTS else hub.settings.host
                settings_for_node = settings.model_copy(update={"loop_host": f"{hub_host}:{hub.port}"})
            else:
                settings_for_node = settings
            server = GrpcServer(entry.load().create(settings_for_node), settings_for_node)
            servers.append(server)
            return server

        return build

    return all_settings, [builder(e, s) for e, s in zip(entries, all_settings, strict=True)]

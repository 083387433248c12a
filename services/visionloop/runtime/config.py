"""Configuration from the environment, validated once at start-up.

Every setting has the environment name users set (``Field(alias=...)``); command-line flags
override by field name. A bad or missing setting raises ``ConfigError`` whose message is one
line naming the setting, which the CLI prints before exiting non-zero.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from visionloop.client.channel import ChannelConfig
from visionloop.client.loop import LoopClient
from visionloop.loop.v1 import project_service_pb2
from visionloop.runtime import access, tls


def _certificate_file(value: Path | None) -> Path | None:
    """A file of PEM certificates; the reason it is not, otherwise (gRPC would only say 'Failed to bind')."""
    if value is not None:
        if not value.is_file():
            raise ValueError(f"file {value} does not exist")
        tls.load_certificates(value)
    return value


def _key_file(value: Path | None) -> Path | None:
    """A file holding an unencrypted PEM private key; the reason it is not, otherwise."""
    if value is not None:
        if not value.is_file():
            raise ValueError(f"file {value} does not exist")
        tls.load_private_key(value)
    return value


class ConfigError(Exception):
    """A setting is missing or invalid; ``str()`` is one line naming it."""


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class ServiceSettings(BaseSettings):
    """Settings every service understands.

    Validator names are unique across the settings mix-ins: services inherit several of them.
    """

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", alias="VISIONLOOP_HOST", description="Address the gRPC server binds to.")
    port: int | None = Field(
        None,
        alias="VISIONLOOP_PORT",
        ge=0,
        le=65535,
        description="gRPC port (0: pick a free one; unset: the service's).",
    )
    metrics_port: int | None = Field(
        None,
        alias="VISIONLOOP_METRICS_PORT",
        ge=-1,
        le=65535,
        description="Prometheus /metrics port (0: pick a free one, -1: off; unset: the service's).",
    )
    data_dir: Path = Field(
        Path.home() / ".visionloop", alias="VISIONLOOP_DATA_DIR", description="Folder for the service's local state."
    )
    log_format: LogFormat = Field(
        LogFormat.AUTO, alias="VISIONLOOP_LOG_FORMAT", description="json, console, or auto (console on a TTY)."
    )
    log_level: str = Field("info", alias="VISIONLOOP_LOG_LEVEL", description="debug, info, warning or error.")
    auth_tokens: str = Field(
        "",
        alias="VISIONLOOP_AUTH_TOKENS",
        description=(
            "Tokens accepted: comma-separated role[@organization[/project]]=token entries, the token as itself "
            f"or as sha256:<hex digest>; roles {', '.join(access.ROLES)}; empty disables auth."
        ),
        repr=False,
    )
    tls_cert: Path | None = Field(None, alias="VISIONLOOP_TLS_CERT", description="Server certificate chain (PEM).")
    tls_key: Path | None = Field(None, alias="VISIONLOOP_TLS_KEY", description="Server private key (PEM).")
    tls_client_ca: Path | None = Field(
        None, alias="VISIONLOOP_TLS_CLIENT_CA", description="CA for client certificates; setting it requires mTLS."
    )
    health_port: int | None = Field(
        None,
        alias="VISIONLOOP_HEALTH_PORT",
        ge=0,
        le=65535,
        description="Plaintext port serving grpc.health.v1 only (0: pick a free one; unset: none), for "
        "probes that cannot speak TLS, such as kubelet's gRPC probes.",
    )
    grpc_keepalive_seconds: float = Field(
        60.0,
        alias="VISIONLOOP_GRPC_KEEPALIVE_SECONDS",
        ge=10,
        le=7200,
        description="How long a connection may stay silent before the server pings it, so a peer that went "
        "away (a robot out of radio range) is noticed and its open calls end.",
    )
    grpc_keepalive_timeout_seconds: float = Field(
        20.0,
        alias="VISIONLOOP_GRPC_KEEPALIVE_TIMEOUT_SECONDS",
        ge=1,
        le=600,
        description="How long the server waits for a ping's answer before it closes the connection.",
    )
    grpc_max_connection_age_seconds: float = Field(
        0.0,
        alias="VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS",
        ge=0,
        description="Age (with gRPC's +-10% jitter) after which the server asks a client to reconnect "
        "(GOAWAY): a client behind a Service then reaches replicas added since it connected; 0: never.",
    )
    grpc_max_connection_age_grace_seconds: float | None = Field(
        None,
        alias="VISIONLOOP_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS",
        ge=0,
        description="Time calls still open on a connection past its maximum age get before it closes "
        "(unset: as long as they take).",
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024,
        alias="VISIONLOOP_MAX_MESSAGE_BYTES",
        ge=1024 * 1024,
        le=256 * 1024 * 1024,
        description="Largest gRPC message accepted or sent; blobs travel in chunks regardless.",
    )
    shutdown_grace_seconds: float = Field(
        10.0, alias="VISIONLOOP_SHUTDOWN_GRACE_SECONDS", ge=0, description="Time in-flight calls get after SIGTERM."
    )
    shutdown_drain_seconds: float = Field(
        1.0,
        alias="VISIONLOOP_SHUTDOWN_DRAIN_SECONDS",
        ge=0,
        description="Time health reports NOT_SERVING while still serving, so load balancers move away first.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value.lower()

    @field_validator("auth_tokens")
    @classmethod
    def _token_entries(cls, value: str) -> str:
        access.parse_tokens(value)  # its errors never echo an entry: entries hold secrets
        return value

    @field_validator("tls_cert", "tls_client_ca")
    @classmethod
    def _server_certificates(cls, value: Path | None) -> Path | None:
        return _certificate_file(value)

    @field_validator("tls_key")
    @classmethod
    def _server_key(cls, value: Path | None) -> Path | None:
        return _key_file(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("VISIONLOOP_TLS_CERT and VISIONLOOP_TLS_KEY must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("VISIONLOOP_TLS_CLIENT_CA (mutual TLS) needs VISIONLOOP_TLS_CERT and VISIONLOOP_TLS_KEY")
        if self.tls_cert is not None and self.tls_key is not None:
            tls.check_key_pair(self.tls_cert, self.tls_key, "VISIONLOOP_TLS_CERT", "VISIONLOOP_TLS_KEY")
        return self

    @model_validator(mode="after")
    def _connection_limits(self) -> Self:
        if self.health_port and self.health_port == self.port:
            raise ValueError("VISIONLOOP_HEALTH_PORT must differ from VISIONLOOP_PORT")
        if self.grpc_keepalive_timeout_seconds >= self.grpc_keepalive_seconds:
            raise ValueError(
                "VISIONLOOP_GRPC_KEEPALIVE_TIMEOUT_SECONDS must be shorter than VISIONLOOP_GRPC_KEEPALIVE_SECONDS"
            )
        age = self.grpc_max_connection_age_seconds
        if 0 < age < 1:
            raise ValueError("VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS must be 0 (never) or at least 1")
        if self.grpc_max_connection_age_grace_seconds is not None and not age:
            raise ValueError(
                "VISIONLOOP_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS needs VISIONLOOP_GRPC_MAX_CONNECTION_AGE_SECONDS"
            )
        return self

    def grpc_server_options(self) -> list[tuple[str, int]]:
        """Keepalive and connection-age options of the gRPC server (milliseconds, as gRPC takes them)."""
        options = [
            ("grpc.keepalive_time_ms", round(self.grpc_keepalive_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", round(self.grpc_keepalive_timeout_seconds * 1000)),
        ]
        if self.grpc_max_connection_age_seconds:
            options.append(("grpc.max_connection_age_ms", round(self.grpc_max_connection_age_seconds * 1000)))
            if self.grpc_max_connection_age_grace_seconds is not None:
                grace = round(self.grpc_max_connection_age_grace_seconds * 1000)
                options.append(("grpc.max_connection_age_grace_ms", grace))
        return options

    def tokens(self) -> access.Tokens:
        """The tokens this service accepts (none: auth is off)."""
        return access.Tokens(access.parse_tokens(self.auth_tokens))


class PeerSettings(BaseSettings):
    """How a node reaches the hub (names users of existing learning-loop nodes know)."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    loop_host: str = Field("127.0.0.1:50051", alias="LOOP_HOST", description="Hub address host:port.")
    loop_organization: str = Field("demo", alias="LOOP_ORGANIZATION", description="Organization the node works for.")
    loop_project: str = Field("demo", alias="LOOP_PROJECT", description="Project the node works for.")
    loop_ssl_cert_path: Path | None = Field(
        None, alias="LOOP_SSL_CERT_PATH", description="CA certificate for TLS to the hub; unset means plaintext."
    )
    loop_client_cert: Path | None = Field(None, alias="LOOP_CLIENT_CERT", description="Client certificate for mTLS.")
    loop_client_key: Path | None = Field(None, alias="LOOP_CLIENT_KEY", description="Client key for mTLS.")
    loop_token: str = Field(
        "", alias="LOOP_TOKEN", description="Bearer token the node presents to the hub.", repr=False
    )

    def channel_config(self, **extra: Any) -> ChannelConfig:
        """How to open a channel to the hub (``extra``: further ChannelConfig fields)."""
        return ChannelConfig(
            target=self.loop_host,
            token=self.loop_token or None,
            root_certificates=self.loop_ssl_cert_path,
            certificate_chain=self.loop_client_cert,
            private_key=self.loop_client_key,
            **extra,
        )

    def loop_client(self, timeout: float = 30.0) -> LoopClient:
        """A blocking client for the node's project on the hub; ``close`` it when done."""
        return LoopClient(
            self.loop_host,
            self.loop_organization,
            self.loop_project,
            token=self.loop_token or None,
            root_certificates=self.loop_ssl_cert_path,
            certificate_chain=self.loop_client_cert,
            private_key=self.loop_client_key,
            timeout=timeout,
        )

    @property
    def project_ref(self) -> project_service_pb2.ProjectRef:
        return project_service_pb2.ProjectRef(organization=self.loop_organization, project=self.loop_project)

    @field_validator("loop_host")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, e.g. loop.example.com:50051")
        return value

    @field_validator("loop_organization", "loop_project")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", value):
            raise ValueError("use 1-64 characters of a-z, 0-9, '_' and '-'")
        return value

    @field_validator("loop_ssl_cert_path", "loop_client_cert")
    @classmethod
    def _peer_certificates(cls, value: Path | None) -> Path | None:
        return _certificate_file(value)

    @field_validator("loop_client_key")
    @classmethod
    def _peer_key(cls, value: Path | None) -> Path | None:
        return _key_file(value)

    @model_validator(mode="after")
    def _client_pair(self) -> Self:
        if (self.loop_client_cert is None) != (self.loop_client_key is None):
            raise ValueError("LOOP_CLIENT_CERT and LOOP_CLIENT_KEY must be set together")
        if self.loop_client_cert is not None and self.loop_client_key is not None:
            tls.check_key_pair(self.loop_client_cert, self.loop_client_key, "LOOP_CLIENT_CERT", "LOOP_CLIENT_KEY")
        return self


S = TypeVar("S", bound=BaseSettings)


def _first_line(error: ValidationError, cls: type[BaseSettings]) -> str:
    """Render the first validation error as 'configuration error: NAME: reason'."""
    detail = error.errors(include_url=False, include_input=False)[0]
    loc = detail.get("loc") or ()
    name = str(loc[0]) if loc else ""
    field = cls.model_fields.get(name)
    if field is not None and field.alias:
        name = field.alias
    reason = str(detail.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"configuration error: {name}: {reason}" if name else f"configuration error: {reason}"


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Read ``cls`` from the environment; ``overrides`` (command-line flags) win. Raises ``ConfigError``."""
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        raise ConfigError(_first_line(error, cls).replace("\n", " ")) from None

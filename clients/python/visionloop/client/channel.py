"""gRPC channels to VisionLoop services: plaintext, TLS or mutual TLS, with an optional bearer token.

Both robots (sync ``grpc``) and the services themselves (``grpc.aio``, when a node talks to the hub)
build their channels here, so TLS, auth metadata and message-size limits behave the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def _read(value: str | Path | bytes | None) -> bytes | None:
    """Accept PEM content as bytes or a path to a PEM file."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class ChannelConfig:
    """Where and how to connect.

    ``root_certificates`` turns TLS on (the CA that signed the server's certificate);
    ``certificate_chain`` and ``private_key`` add a client certificate for mutual TLS.
    """

    target: str
    token: str | None = None
    root_certificates: str | Path | bytes | None = None
    certificate_chain: str | Path | bytes | None = None
    private_key: str | Path | bytes | None = None
    tls: bool = False
    server_name_override: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Keepalive finds a dead wireless link while a call is open. Pings without calls stay off:
    # servers with gRPC's default policy answer those with GOAWAY "too_many_pings".
    keepalive_time_ms: int = 20_000
    keepalive_timeout_ms: int = 10_000
    keepalive_permit_without_calls: bool = False
    # Cap of gRPC's reconnect backoff (its default grows to 120 s); None keeps gRPC's default.
    max_reconnect_backoff_ms: int | None = None
    extra_options: Sequence[tuple[str, Any]] = field(default_factory=tuple)

    @property
    def secure(self) -> bool:
        return self.tls or self.root_certificates is not None or self.certificate_chain is not None

    def options(self) -> list[tuple[str, Any]]:
        opts: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.keepalive_permit_without_calls)),
        ]
        if self.max_reconnect_backoff_ms is not None:
            opts.append(("grpc.max_reconnect_backoff_ms", self.max_reconnect_backoff_ms))
        if self.server_name_override:
            opts.append(("grpc.ssl_target_name_override", self.server_name_override))
        opts.extend(self.extra_options)
        return opts

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.root_certificates),
            private_key=_read(self.private_key),
            certificate_chain=_read(self.certificate_chain),
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def _with_metadata(details: Any, extra: tuple[tuple[str, str], ...]) -> Any:
    """Return call details with ``extra`` appended; grpc passes namedtuples, sync and aio alike."""
    return details._replace(metadata=[*(details.metadata or ()), *extra])


class _TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token to every call of a sync channel (plaintext or TLS alike)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(_with_metadata(details, self._metadata), request)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return self._call(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return self._call(continuation, client_call_details, request_iterator)


class _AioTokenInterceptor:
    """Base of the four grpc.aio client interceptors that add the bearer token."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_with_metadata(details, self._metadata), request)


class _AioUnaryUnary(_AioTokenInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request)


class _AioUnaryStream(_AioTokenInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request)


class _AioStreamUnary(_AioTokenInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)


class _AioStreamStream(_AioTokenInterceptor, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)


def create_channel(config: ChannelConfig) -> grpc.Channel:
    """Open a blocking channel (robot code, scripts)."""
    if config.secure:
        channel = grpc.secure_channel(config.target, config.credentials(), options=config.options())
    else:
        channel = grpc.insecure_channel(config.target, options=config.options())
    metadata = config.metadata()
    return grpc.intercept_channel(channel, _TokenInterceptor(metadata)) if metadata else channel


def create_aio_channel(config: ChannelConfig) -> grpc.aio.Channel:
    """Open an asyncio channel (services calling their peers)."""
    metadata = config.metadata()
    interceptors: list[grpc.aio.ClientInterceptor] | None = (
        [_AioUnaryUnary(metadata), _AioUnaryStream(metadata), _AioStreamUnary(metadata), _AioStreamStream(metadata)]
        if metadata
        else None
    )
    if config.secure:
        return grpc.aio.secure_channel(
            config.target, config.credentials(), options=config.options(), interceptors=interceptors
        )
    return grpc.aio.insecure_channel(config.target, options=config.options(), interceptors=interceptors)

"""Wrapping gRPC method handlers so interceptors can run code around every call.

grpc.aio interceptors only see the handler, not the call. ``wrap_handler`` rebuilds a handler
whose behaviour runs inside an async context manager (a *scope*) for unary and streaming RPCs
alike. Streaming responses are iterated, never awaited.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import grpc

_BY_VALUE = {status.value[0]: status for status in grpc.StatusCode}

Scope = Callable[[grpc.aio.ServicerContext], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class RpcInfo:
    """What an interceptor knows about a call before it runs."""

    full_method: str  # "/visionloop.detector.v1.DetectorService/Detect"
    service: str  # "visionloop.detector.v1.DetectorService"
    method: str  # "Detect"
    kind: str  # unary, client_stream, server_stream or bidi_stream
    metadata: dict[str, str]

    @classmethod
    def from_call(cls, details: grpc.HandlerCallDetails, handler: grpc.RpcMethodHandler) -> RpcInfo:
        service, _, method = details.method.lstrip("/").rpartition("/")
        if handler.request_streaming and handler.response_streaming:
            kind = "bidi_stream"
        elif handler.request_streaming:
            kind = "client_stream"
        elif handler.response_streaming:
            kind = "server_stream"
        else:
            kind = "unary"
        metadata: dict[str, str] = {}
        for key, value in details.invocation_metadata or ():
            if isinstance(value, str):
                metadata.setdefault(key.lower(), value)
        return cls(details.method, service, method, kind, metadata)


async def _result(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _iterate(value: Any) -> AsyncIterator[Any]:
    """Yield from whatever a streaming behaviour returned: async/sync iterator, or a coroutine using context.write."""
    if inspect.isawaitable(value):
        value = await value
    if value is None:
        return
    if hasattr(value, "__aiter__"):
        async for item in value:
            yield item
    else:
        for item in value:
            yield item


# grpc's stubs type a handler's behaviours for the sync server (grpc.ServicerContext, plain iterators);
# under grpc.aio they take an aio context and may be coroutines or async generators, hence Callable[..., Any].
Behaviour = Callable[..., Any]


def wrap_handler(handler: grpc.RpcMethodHandler, scope: Scope) -> grpc.RpcMethodHandler:
    """Return ``handler`` with every call running inside ``scope(context)``."""
    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary_unary: Behaviour = handler.unary_unary

        async def unary_unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with scope(context):
                return await _result(unary_unary(request, context))

        return grpc.unary_unary_rpc_method_handler(unary_unary_behavior, **codecs)
    if handler.stream_unary is not None:
        stream_unary: Behaviour = handler.stream_unary

        async def stream_unary_behavior(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async with scope(context):
                return await _result(stream_unary(requests, context))

        return grpc.stream_unary_rpc_method_handler(stream_unary_behavior, **codecs)
    if handler.unary_stream is not None:
        unary_stream: Behaviour = handler.unary_stream

        async def unary_stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with scope(context):
                async for item in _iterate(unary_stream(request, context)):
                    yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream_behavior, **codecs)
    stream_stream: Behaviour | None = handler.stream_stream
    assert stream_stream is not None, "a method handler has one of the four behaviours"

    async def stream_stream_behavior(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async with scope(context):
            async for item in _iterate(stream_stream(requests, context)):
                yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream_behavior, **codecs)


def status_of(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a finished call ends with, as far as the server can tell."""
    if isinstance(error, grpc.aio.AbortError | grpc.RpcError) or error is None:
        code = context.code()
        if code is None:
            return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
        if isinstance(code, grpc.StatusCode):
            return code
        return _BY_VALUE.get(int(code), grpc.StatusCode.UNKNOWN)
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN

"""The server interceptor chain, outermost first: request id -> auth -> metrics -> open streams -> exceptions.

Each interceptor opens a *scope* around the call (see ``rpc.wrap_handler``). Requests refused
by auth never reach metrics or the handler; exceptions are turned into statuses innermost, so
metrics record the code the client actually sees.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, cast

import grpc
import structlog
from google.protobuf import descriptor_pool

from visionloop.common.v1 import access_pb2
from visionloop.runtime import access, errors, resources, validation
from visionloop.runtime.metrics import AUTH_FAILURES, GRPC_HANDLED, GRPC_HANDLING_SECONDS, GRPC_STARTED
from visionloop.runtime.rpc import RpcInfo, status_of, wrap_handler
from visionloop.runtime.text import STATUS_MESSAGE_CHARS, clip

if TYPE_CHECKING:
    from google.protobuf.descriptor_pb2 import MethodOptions
    from google.protobuf.internal.extension_dict import _ExtensionFieldDescriptor

log = structlog.stdlib.get_logger("visionloop.rpc")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes and tooling must work without a token.
PUBLIC_SERVICE_PREFIXES = ("grpc.health.v1.", "grpc.reflection.")
_SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
# grpcio-tools' .pyi types an extension as a plain FieldDescriptor; protobuf's stubs index
# ``Extensions`` by the message it extends and the value it holds.
_ACCESS = cast("_ExtensionFieldDescriptor[MethodOptions, access_pb2.Access]", access_pb2.access)


class ScopedInterceptor(grpc.aio.ServerInterceptor):
    """Base: run ``scope(info, context)`` around every call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED itself
            return handler
        info = RpcInfo.from_call(handler_call_details, handler)
        return wrap_handler(self.prepare(handler), lambda context: self.scope(info, context))

    def prepare(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """The handler the scope runs around (the chain checks requests against the contract here)."""
        return handler

    def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AbstractAsyncContextManager[None]:
        raise NotImplementedError


class RequestIdInterceptor(ScopedInterceptor):
    """Reads ``x-request-id`` (or makes one), binds it into the log context, returns it in trailers, logs the call."""

    @asynccontextmanager
    async def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        given = info.metadata.get("x-request-id", "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        context.set_trailing_metadata((("x-request-id", request_id),))
        started = time.perf_counter()
        error: BaseException | None = None
        with structlog.contextvars.bound_contextvars(request_id=request_id, rpc=info.full_method):
            try:
                yield
            except BaseException as exc:
                error = exc
                raise
            finally:
                code = status_of(context, error)
                fields = {"grpc_code": code.name, "duration_ms": round((time.perf_counter() - started) * 1000, 3)}
                # Successful calls only at debug: a detector serves 30 frames per second per camera.
                if code in _SERVER_FAULTS:
                    log.error("rpc finished", **fields)
                elif code is not grpc.StatusCode.OK:
                    log.info("rpc finished", **fields)
                elif not info.service.startswith(PUBLIC_SERVICE_PREFIXES):
                    log.debug("rpc finished", **fields)


@lru_cache(maxsize=1024)
def allowed_roles(full_method: str) -> frozenset[str] | None:
    """Roles that may call ``full_method`` per the contract's ``access`` option; None means public.

    Methods without the option (or not in the descriptor pool) are admin-only.
    """
    service, _, method = full_method.lstrip("/").rpartition("/")
    if service.startswith(PUBLIC_SERVICE_PREFIXES):
        return None
    roles = {"admin"}
    try:
        descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    except KeyError:
        return frozenset(roles)
    options = descriptor.GetOptions()
    if options.HasExtension(_ACCESS):
        for role in options.Extensions[_ACCESS].roles:
            roles.add(access_pb2.Role.Name(role).removeprefix("ROLE_").lower())
    return frozenset(roles)


class AuthInterceptor(ScopedInterceptor):
    """Bearer-token auth with roles, and projects a token is limited to; tokens are never logged.

    ``project``: the one (organization, project) this service serves, e.g. a detector's
    LOOP_PROJECT; a token limited to other projects may not call it at all.
    """

    def __init__(self, tokens: access.Tokens, project: tuple[str, str] | None = None) -> None:
        self._tokens = tokens
        self._project = project
        if access.LEGACY_NODE_ROLE in tokens.roles():
            log.warning(
                "VISIONLOOP_AUTH_TOKENS grants the deprecated role 'node', which may call what every node kind "
                "may; give each node kind its own token: " + ", ".join(access.NODE_ROLES.values())
            )

    @asynccontextmanager
    async def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        allowed = allowed_roles(info.full_method)
        if allowed is None:
            yield
            return
        header = info.metadata.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            AUTH_FAILURES.labels(info.service, "missing").inc()
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing credentials: send metadata 'authorization: Bearer <token>'",
            )
        grants = self._tokens.grants_of(presented.strip())
        if not grants:
            AUTH_FAILURES.labels(info.service, "invalid").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid token")
        usable = [grant for grant in grants if grant.role in allowed]
        if not usable:
            AUTH_FAILURES.labels(info.service, "forbidden").inc()
            held = ", ".join(f"'{role}'" for role in sorted({grant.role for grant in grants}))
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {held} may not call {info.service}/{info.method} (allowed: {', '.join(sorted(allowed))})",
            )
        caller = access.Caller.of(usable)
        if self._project is not None and not caller.may_use(*self._project):
            AUTH_FAILURES.labels(info.service, "forbidden").inc()
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this token is limited to {caller.limits()}; this service serves {'/'.join(self._project)}",
            )
        with structlog.contextvars.bound_contextvars(role=",".join(caller.roles)), access.acting_as(caller):
            yield


class MetricsInterceptor(ScopedInterceptor):
    """``grpc_server_started_total``, ``grpc_server_handled_total`` and ``grpc_server_handling_seconds``."""

    @asynccontextmanager
    async def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        labels = (info.kind, info.service, info.method)
        GRPC_STARTED.labels(*labels).inc()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            GRPC_HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - started)
            GRPC_HANDLED.labels(*labels, status_of(context, error).name).inc()


class OpenStreamInterceptor(ScopedInterceptor):
    """Tracks open-ended streams so shutdown can end them instead of waiting out the grace period.

    By convention a response stream named ``Watch*`` or ``*Stream`` (health watches, event
    watches, ``DetectStream``) never ends on its own. After the drain period, ``close_all`` ends
    each with UNAVAILABLE, which tells the client to reconnect (to another replica); unary calls
    and finite streams keep their grace period.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._closing = False

    @staticmethod
    def open_ended(info: RpcInfo) -> bool:
        return info.kind in {"server_stream", "bidi_stream"} and (
            info.method.startswith("Watch") or info.method.endswith("Stream")
        )

    @asynccontextmanager
    async def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is None or not self.open_ended(info):
            yield
            return
        self._tasks.add(task)
        try:
            yield
        except asyncio.CancelledError:
            if not self._closing:
                raise
            task.uncancel()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down; reconnect")
        finally:
            self._tasks.discard(task)

    def close_all(self) -> int:
        """End every open-ended stream; returns how many were open."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        return len(self._tasks)


class ExceptionInterceptor(ScopedInterceptor):
    """Domain errors to their status, running out of a resource (a full disk) to RESOURCE_EXHAUSTED or
    UNAVAILABLE (``resources``), anything unexpected to INTERNAL with the stack in the log only."""

    @asynccontextmanager
    async def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise
        except errors.ServiceError as exc:
            await context.abort(exc.code, clip(exc.message, STATUS_MESSAGE_CHARS))
        except NotImplementedError:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"{info.service}/{info.method} is not implemented in this release"
            )
        except Exception as error:
            if (shortage := resources.shortage_of(error)) is not None:  # a full disk: the operator's to fix
                resources.report(shortage, error)
                await context.abort(shortage.code, shortage.message)
            log.exception("unhandled error in handler")
            request_id = structlog.contextvars.get_contextvars().get("request_id", "")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})")


class ScopeChain(ScopedInterceptor):
    """Scoped interceptors run as one, outermost first: one handler lookup, one ``RpcInfo`` and one
    wrapped handler per call instead of one of each per interceptor. grpc.aio runs every server
    interceptor as its own coroutine around the next; five of them cost ~0.3 ms per call."""

    def __init__(self, links: Sequence[ScopedInterceptor]) -> None:
        self.links = tuple(links)

    def prepare(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # Innermost: a request that does not parse or breaks its contract's limits is refused
        # with INVALID_ARGUMENT inside every scope, before any handler code runs.
        return validation.guard(handler)

    @asynccontextmanager
    async def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        # Entered in order and left in reverse, exactly as nested interceptors: a scope that aborts
        # on the way in (auth) leaves only the ones entered before it.
        async with AsyncExitStack() as stack:
            for link in self.links:
                await stack.enter_async_context(link.scope(info, context))
            yield


class StartupGate(ScopedInterceptor):
    """Refuses calls with UNAVAILABLE until the service's start-up steps have run.

    The server listens before those steps (they get its bound port), and some of them must finish
    before a call can be served: the hub's database migration, the bootstrap project. A call in
    that window would otherwise fail on a half-made service (INTERNAL, "relation does not exist").
    UNAVAILABLE is what clients retry; health and reflection answer throughout (health says
    NOT_SERVING until the gate opens)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.open = False

    @asynccontextmanager
    async def scope(self, info: RpcInfo, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        if not self.open and not info.service.startswith(PUBLIC_SERVICE_PREFIXES):
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"the {self.service} is still starting up; retry in a moment"
            )
        yield


def interceptor_chain(
    tokens: access.Tokens,
    streams: OpenStreamInterceptor,
    project: tuple[str, str] | None = None,
    gate: StartupGate | None = None,
) -> list[grpc.aio.ServerInterceptor]:
    """The standard chain, outermost first, as one interceptor. Auth is left out when no tokens are configured;
    ``project``: see ``AuthInterceptor``; ``gate`` (after metrics, so its refusals are counted) holds calls
    off until the service has started."""
    links: list[ScopedInterceptor] = [RequestIdInterceptor()]
    if tokens:
        links.append(AuthInterceptor(tokens, project))
    links.append(MetricsInterceptor())
    if gate is not None:
        links.append(gate)
    links += [streams, ExceptionInterceptor()]
    return [ScopeChain(links)]

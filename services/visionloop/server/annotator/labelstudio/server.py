"""The bridge's HTTP server (aiohttp) in the annotator's event loop: Label Studio's ML-backend
protocol, its webhooks and the images its browser loads.

Every request but ``GET /health`` must carry the bridge credential (LABEL_STUDIO_BRIDGE_TOKEN):
as HTTP basic auth's password (Label Studio's ML backend setting) or as ``Authorization: Bearer``
(a webhook header); image URLs carry a signature instead (``urls``). Bodies are JSON objects of
at most ``MAX_BODY`` bytes, checked against the shape Label Studio sends; every answer is JSON
(an image is the image).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionloop.runtime.errors import ServiceError
from visionloop.runtime.logging import get_logger
from visionloop.server.annotator.labelstudio import urls
from visionloop.server.annotator.labelstudio.bridge import Bridge, Refused, image_id

log = get_logger(__name__)
MAX_BODY = 16 * 1024 * 1024  # a brush mask of a 12-megapixel image fits comfortably
READ_TIMEOUT = 60.0  # a sender that claims more than it sends is cut off
_HTTP_OF_GRPC = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 413,
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class TaskBody(_Loose):
    id: int | None = None
    data: dict[str, Any]


class PredictBody(_Loose):
    tasks: list[TaskBody] = Field(min_length=1, max_length=10_000)
    label_config: str = ""
    params: dict[str, Any] | None = None


class SetupBody(_Loose):
    schema_: str = Field("", alias="schema")


class AnnotationBody(_Loose):
    id: int
    result: list[Any] = []
    was_cancelled: bool = False
    task: int | dict[str, Any] | None = None
    completed_by: int | str | dict[str, Any] | None = None


class Reference(_Loose):
    id: int


class WebhookBody(_Loose):
    action: str
    project: dict[str, Any] | int | None = None
    annotation: AnnotationBody | list[AnnotationBody] | None = None
    task: dict[str, Any] | list[dict[str, Any]] | None = None
    annotations: list[Reference] | None = None
    tasks: list[Reference] | None = None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "the body does not have the shape Label Studio sends: " + "; ".join(parts)


@web.middleware
async def _answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every outcome as JSON with a status a person can act on."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        text = error.text or ""
        return _error(error.status, error.reason if not text or text.startswith(str(error.status)) else text)
    except Refused as error:
        return _error(400, str(error))
    except ValidationError as error:
        return _error(400, _validation_message(error))
    except ServiceError as error:
        status = _HTTP_OF_GRPC.get(error.code.name, 502)
        return _error(status, str(error) if status != 502 else f"the hub did not answer: {error}")
    except Exception:
        log.exception("label studio request failed", path=request.path)
        return _error(500, "the bridge failed on this request; see the annotator's log")


def _authorised(secret: str, header: str) -> bool:
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            _, _, given = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme in ("bearer", "token"):
        given = value.strip()
    else:
        return False
    return hmac.compare_digest(given.encode(), secret.encode())


def _auth(secret: str) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "GET" and request.path.rstrip("/") in ("", "/health"):
            return await handler(request)
        if request.method == "GET" and request.path.startswith("/images/") and "signature" in request.query:
            return await handler(request)  # the signature is checked by the handler
        if not _authorised(secret, request.headers.get("Authorization", "")):
            return web.json_response(
                {
                    "error": "the bridge needs its credential: basic auth with LABEL_STUDIO_BRIDGE_TOKEN "
                    "as the password, or Authorization: Bearer <token>"
                },
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="visionloop"'},
            )
        return await handler(request)

    return check


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            raw = await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="the body did not arrive in time") from None
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused(f"the body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise Refused("the body must be a JSON object")
    return body


class Routes:
    def __init__(self, bridge: Bridge, secret: str) -> None:
        self.bridge = bridge
        self.secret = secret

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "UP", "model_class": "VisionLoop"})

    async def setup(self, request: web.Request) -> web.Response:
        body = SetupBody.model_validate(await _body(request))
        return web.json_response(await self.bridge.setup(body.schema_))

    async def versions(self, request: web.Request) -> web.Response:
        return web.json_response({"versions": [await self.bridge.model_version()]})

    async def predict(self, request: web.Request) -> web.Response:
        body = PredictBody.model_validate(await _body(request))
        tasks = [task.model_dump() for task in body.tasks]
        context = (body.params or {}).get("context")
        if isinstance(context, dict) and context.get("result"):
            if len(tasks) != 1:
                raise Refused("a smart tool's request names exactly one task")
            result = await self.bridge.interactive(tasks[0], context, body.label_config)
            return web.json_response({"results": [result]})
        return web.json_response({"results": await self.bridge.predict(tasks, body.label_config)})

    async def webhook(self, request: web.Request) -> web.Response:
        body = WebhookBody.model_validate(await _body(request))
        action = body.action
        label_config = body.project.get("label_config", "") if isinstance(body.project, dict) else ""
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
            annotations = body.annotation if isinstance(body.annotation, list) else [body.annotation]
            tasks = body.task if isinstance(body.task, list) else [body.task]
            by_id = {t.get("id"): t for t in tasks if isinstance(t, dict)}
            answers = []
            for annotation in annotations:
                if annotation is None:
                    raise Refused(f"{action} without an annotation")
                task_id = annotation.task.get("id") if isinstance(annotation.task, dict) else annotation.task
                task = by_id.get(task_id) or (tasks[0] if len(tasks) == 1 and isinstance(tasks[0], dict) else None)
                if task is None:
                    raise Refused(f"{action}: annotation {annotation.id} comes without its task")
                image_id(task)  # refuse a task that names no image before anything is written
                answers.append(await self.bridge.sync(body.project, annotation.model_dump(), task, label_config))
            return web.json_response(answers[0] if len(answers) == 1 else {"status": "ok", "annotations": answers})
        if action == "ANNOTATIONS_DELETED":
            return web.json_response(await self.bridge.delete(body.project, [a.id for a in body.annotations or []]))
        if action == "TASKS_DELETED":
            return web.json_response(await self.bridge.delete_tasks(body.project, [t.id for t in body.tasks or []]))
        if action == "START_TRAINING":
            return web.json_response(await self.bridge.train())
        return web.json_response({"status": "ignored", "action": action})

    async def train(self, request: web.Request) -> web.Response:
        await _body(request)
        return web.json_response(await self.bridge.train())

    async def image(self, request: web.Request) -> web.Response:
        wanted = request.match_info["image_id"]
        if "signature" in request.query and not urls.valid(
            self.secret, wanted, request.query.get("expires", ""), request.query["signature"]
        ):
            return _error(403, "the image URL's signature is wrong or expired; sync the project again for new URLs")
        image_id({"data": {"image_id": wanted}})
        metadata, data = await self.bridge.hub.image(self.bridge.ref, wanted)
        return web.Response(body=data, content_type=metadata.content_type or "application/octet-stream")

    async def not_found(self, request: web.Request) -> web.Response:
        return _error(404, f"no such endpoint: {request.method} {request.path}")


def application(bridge: Bridge, secret: str) -> web.Application:
    app = web.Application(middlewares=[_answers, _auth(secret)], client_max_size=MAX_BODY)
    routes = Routes(bridge, secret)
    app.router.add_get("/", routes.health)
    app.router.add_get("/health", routes.health)
    app.router.add_post("/setup", routes.setup)
    app.router.add_get("/versions", routes.versions)
    app.router.add_post("/predict", routes.predict)
    app.router.add_post("/webhook", routes.webhook)
    app.router.add_post("/train", routes.train)
    app.router.add_get("/images/{image_id}", routes.image)
    app.router.add_route("*", "/{tail:.*}", routes.not_found)
    return app


class LabelStudioServer:
    """The bridge served on host:port (port 0: any free port, then ``port`` says which)."""

    def __init__(self, bridge: Bridge, secret: str, host: str, port: int) -> None:
        self.bridge = bridge
        self._runner = web.AppRunner(application(bridge, secret), access_log=None, shutdown_timeout=5)
        self.host = host
        self.port = port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server  # aiohttp exposes the bound sockets only here
        if sockets := getattr(server, "sockets", None):  # typed as AbstractServer, which declares no sockets
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        await self._runner.cleanup()
        await asyncio.to_thread(self.bridge.store.close)

"""A Label Studio ML backend over the hub: Label Studio can be the annotation UI of VisionLoop.

Endpoints of Label Studio's ML-backend protocol:

- ``GET /health``: ``{"status": "UP", ...}``
- ``POST /setup``: accepts the project's label config, answers the model version
- ``POST /predict``: ``{"tasks": [...], "label_config": ...}`` -> ``{"results": [...]}``, one prediction
  per task from the model detections the hub stores for the image (pre-annotations), with
  coordinates in percent of the image as Label Studio expects
- ``POST /webhook``: ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` events write the annotation's
  regions to the hub as annotations (categories by label name)

A task names its hub image by ``data.image_id`` or by the 64-hex image id in its image URL (as in
``https://hub.example.com/images/<sha256>.jpg``). The project is the annotator's LOOP_PROJECT.
"""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from visionloop.client.loop import LoopClient
from visionloop.common.v1 import annotation_pb2, detection_pb2, geometry_pb2
from visionloop.loop.v1 import annotation_service_pb2, image_service_pb2
from visionloop.runtime.logging import get_logger

log = get_logger(__name__)
_IMAGE_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_TAGS = {"rectanglelabels": "box", "polygonlabels": "polygon", "keypointlabels": "point"}
MAX_BODY = 16 * 1024 * 1024


class BadRequest(Exception):
    """The request cannot be served; the message goes back to Label Studio."""


@dataclass(frozen=True)
class Control:
    """A labelling control of the label config: its tag type, name and the image it labels."""

    type: str  # rectanglelabels, polygonlabels or keypointlabels
    name: str
    to_name: str


def controls(label_config: str) -> dict[str, Control]:
    """The config's labelling controls by kind (box, polygon, point)."""
    found: dict[str, Control] = {}
    if not label_config:
        return found
    try:
        root = ElementTree.fromstring(label_config)
    except ElementTree.ParseError as exc:
        raise BadRequest(f"label_config is not XML: {exc}") from None
    for element in root.iter():
        tag = element.tag.lower()
        if tag in _TAGS and _TAGS[tag] not in found:
            found[_TAGS[tag]] = Control(tag, element.get("name", "label"), element.get("toName", "image"))
    return found


def image_id(task: dict[str, Any]) -> str:
    data = task.get("data") or {}
    if isinstance(data.get("image_id"), str) and _IMAGE_ID.fullmatch(data["image_id"]):
        return data["image_id"]
    for value in data.values():
        if isinstance(value, str) and (match := _IMAGE_ID.search(value)):
            return match.group(0)
    raise BadRequest(f"task {task.get('id')} names no hub image: add data.image_id or use the hub image URL")


def _region(
    control: Control, width: int, height: int, label: str, score: float, value: dict[str, Any]
) -> dict[str, Any]:
    value[control.type] = [label]
    return {
        "from_name": control.name,
        "to_name": control.to_name,
        "type": control.type,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": value,
        "score": score,
    }


def regions(detections: detection_pb2.Detections, kinds: dict[str, Control], width: int, height: int) -> list[dict]:
    """Detections as Label Studio result regions, coordinates in percent of the image."""
    out = []
    px, py = 100.0 / width, 100.0 / height
    box_control = kinds.get("box")
    if box_control is not None:
        for d in detections.boxes:
            b = d.box
            value = {"x": b.x * px, "y": b.y * py, "width": b.width * px, "height": b.height * py, "rotation": 0}
            out.append(_region(box_control, width, height, d.category_name, d.confidence, value))
    polygon_control = kinds.get("polygon")
    if polygon_control is not None:
        for s in detections.segmentations:
            value = {"points": [[p.x * px, p.y * py] for p in s.polygon.points], "closed": True}
            out.append(_region(polygon_control, width, height, s.category_name, s.confidence, value))
    point_control = kinds.get("point")
    if point_control is not None:
        for p in detections.points:
            value = {"x": p.point.x * px, "y": p.point.y * py, "width": 0.5}
            out.append(_region(point_control, width, height, p.category_name, p.confidence, value))
    return out


def shape(region: dict[str, Any], width: float, height: float) -> tuple[str, geometry_pb2.Shape] | None:
    """A result region as (label, hub shape) in pixels; None for regions that are not geometry."""
    kind = region.get("type", "")
    value = region.get("value") or {}
    labels = value.get(kind) or []
    if kind not in _TAGS or not labels:
        return None
    width = float(region.get("original_width") or width)
    height = float(region.get("original_height") or height)
    sx, sy = width / 100.0, height / 100.0
    if kind == "rectanglelabels":
        box = geometry_pb2.Box(
            x=value["x"] * sx, y=value["y"] * sy, width=value["width"] * sx, height=value["height"] * sy
        )
        return labels[0], geometry_pb2.Shape(box=box)
    if kind == "polygonlabels":
        points = [geometry_pb2.Point(x=x * sx, y=y * sy) for x, y in value["points"]]
        return labels[0], geometry_pb2.Shape(polygon=geometry_pb2.Polygon(points=points))
    return labels[0], geometry_pb2.Shape(point=geometry_pb2.Point(x=value["x"] * sx, y=value["y"] * sy))


class Bridge:
    """The protocol's logic over a blocking hub client."""

    def __init__(self, hub: LoopClient) -> None:
        self.hub = hub
        self.label_config = ""

    def model_version(self) -> str:
        try:
            return self.hub.deployment().resolved_version or "none"
        except grpc.RpcError:
            return "none"

    def _image(self, image_id_: str) -> tuple[int, int]:
        request = image_service_pb2.GetImageRequest(ref=self.hub.ref, image_id=image_id_)
        metadata = self.hub.images.GetImage(request, timeout=self.hub.timeout).metadata
        return metadata.width, metadata.height

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        self.label_config = body.get("schema") or self.label_config
        controls(self.label_config)  # reject a config that does not parse now, not at the first task
        return {"model_version": self.model_version()}

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        kinds = controls(body.get("label_config") or self.label_config) or {
            "box": Control("rectanglelabels", "label", "image")
        }
        results = []
        version = self.model_version()
        for task in body.get("tasks") or []:
            hub_id = image_id(task)
            width, height = self._image(hub_id)
            request = annotation_service_pb2.GetDetectionsRequest(ref=self.hub.ref, image_id=hub_id)
            detections = self.hub.annotations.GetDetections(request, timeout=self.hub.timeout).detections
            found = regions(detections, kinds, width, height)
            score = min((r["score"] for r in found), default=0.0)
            results.append({"result": found, "score": score, "model_version": version})
        return {"results": results}

    def webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        action = body.get("action", "")
        if action not in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            return {"status": "ignored", "action": action}
        task = body.get("task") or {}
        annotation = body.get("annotation") or {}
        hub_id = image_id(task)
        width, height = self._image(hub_id)
        author = annotation.get("completed_by")
        if isinstance(author, dict):
            author = author.get("email") or author.get("id")
        created = []
        for region in annotation.get("result") or []:
            converted = shape(region, width, height)
            if converted is None:
                continue
            label, geometry = converted
            message = annotation_pb2.Annotation(
                image_id=hub_id,
                category_name=label,
                shape=geometry,
                creator=annotation_pb2.Creator(person=f"labelstudio:{author}" if author else "labelstudio"),
            )
            request = annotation_service_pb2.CreateAnnotationRequest(ref=self.hub.ref, annotation=message)
            created.append(self.hub.annotations.CreateAnnotation(request, timeout=self.hub.timeout).annotation.id)
        return {"status": "ok", "created": created}


def _handler(bridge: Bridge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/health", ""):
                self._send(200, {"status": "UP", "model_class": "VisionLoop", "model_version": bridge.model_version()})
            else:
                self._send(404, {"error": f"no such endpoint {self.path}"})

        def do_POST(self) -> None:
            routes = {"/setup": bridge.setup, "/predict": bridge.predict, "/webhook": bridge.webhook}
            route = routes.get(self.path.rstrip("/"))
            if route is None:
                self._send(404, {"error": f"no such endpoint {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise BadRequest(f"body larger than {MAX_BODY} bytes")
                body = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                self._send(201 if route == bridge.webhook else 200, route(body))
            except (BadRequest, ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": str(exc)})
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                status = (
                    404
                    if code is grpc.StatusCode.NOT_FOUND
                    else 400
                    if code is grpc.StatusCode.INVALID_ARGUMENT
                    else 502
                )
                self._send(status, {"error": f"hub: {exc.details() if hasattr(exc, 'details') else exc}"})

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("label studio request", line=format % args)

    return Handler


class LabelStudioServer:
    """The bridge's HTTP server on its own thread."""

    def __init__(self, hub: LoopClient, host: str, port: int) -> None:
        self.bridge = Bridge(hub)
        self._server = ThreadingHTTPServer((host, port), _handler(self.bridge))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="label-studio", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.bridge.hub.close()

"""Label Studio's labelling config and result regions, and the hub's categories and shapes.

Label Studio gives coordinates in percent of the image (0-100); the hub keeps pixels. A region is
one object: a rectangle, keypoint, polygon or brush mask with one label. Prompt controls
(``smartOnly``, the smart tools' clicks and boxes) are not objects and are not written to the hub.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from visionloop.common.v1 import category_pb2, detection_pb2, geometry_pb2
from visionloop.lib import shapes
from visionloop.server.annotator.labelstudio import brush

# Label Studio's tag (lower case, as in result regions) of each kind of region.
RECTANGLE, KEYPOINT, POLYGON, BRUSH = "rectanglelabels", "keypointlabels", "polygonlabels", "brushlabels"
_CONTROL_NAMES = {RECTANGLE: "box", KEYPOINT: "point", POLYGON: "polygon", BRUSH: "mask"}
_SMART_NAMES = {KEYPOINT: "smart_point", RECTANGLE: "smart_box"}
_TAG_CASE = {
    RECTANGLE: "RectangleLabels",
    KEYPOINT: "KeyPointLabels",
    POLYGON: "PolygonLabels",
    BRUSH: "BrushLabels",
}
# The region kinds each category type may be drawn with.
KINDS = {
    category_pb2.CATEGORY_TYPE_BOX: (RECTANGLE,),
    category_pb2.CATEGORY_TYPE_POINT: (KEYPOINT,),
    category_pb2.CATEGORY_TYPE_SEGMENTATION: (POLYGON, BRUSH),
}
_TYPE_NAMES = {
    category_pb2.CATEGORY_TYPE_BOX: "box",
    category_pb2.CATEGORY_TYPE_POINT: "point",
    category_pb2.CATEGORY_TYPE_SEGMENTATION: "segmentation",
    category_pb2.CATEGORY_TYPE_CLASSIFICATION: "classification",
}
KEYPOINT_SIZE = 0.5  # a keypoint's drawn size in percent of the image width


class Refused(ValueError):
    """A region or request the bridge cannot take; the message names it and says why."""


@dataclass(frozen=True)
class Control:
    name: str
    to_name: str
    smart_only: bool


@dataclass(frozen=True)
class Config:
    """The labelling controls of a Label Studio project, by region kind."""

    controls: dict[str, list[Control]]

    @classmethod
    def parse(cls, label_config: str) -> Config:
        found: dict[str, list[Control]] = {}
        if not label_config:
            return cls(found)
        try:
            root = ElementTree.fromstring(label_config)
        except ElementTree.ParseError as exc:
            raise Refused(f"label_config is not XML: {exc}") from None
        for element in root.iter():
            kind = element.tag.lower()
            if kind in _TAG_CASE:
                smart_only = element.get("smartOnly", element.get("smartonly", "false")).lower() == "true"
                control = Control(element.get("name", kind), element.get("toName", "image"), smart_only)
                found.setdefault(kind, []).append(control)
        return cls(found)

    def output(self, kind: str) -> Control | None:
        """The control predictions of this kind are given for (a drawing control, not a prompt one)."""
        drawing = [c for c in self.controls.get(kind, []) if not c.smart_only]
        return drawing[0] if drawing else None

    def prompts(self) -> set[str]:
        return {c.name for controls in self.controls.values() for c in controls if c.smart_only}


def label_config(categories: Iterable[category_pb2.Category]) -> str:
    """The labelling config for a project's categories: one drawing control per region kind in use
    and, for box and segmentation categories, the smart tools' prompt controls."""
    by_kind: dict[str, list[str]] = {}
    smart: list[str] = []
    for category in categories:
        for kind in KINDS.get(category.type, ()):
            by_kind.setdefault(kind, []).append(category.name)
        if category.type in (category_pb2.CATEGORY_TYPE_BOX, category_pb2.CATEGORY_TYPE_SEGMENTATION):
            smart.append(category.name)
    lines = ["<View>", '  <Image name="image" value="$image" zoom="true" zoomControl="true"/>']

    def control(kind: str, name: str, names: list[str], extra: str = "") -> None:
        lines.append(f'  <{_TAG_CASE[kind]} name="{name}" toName="image"{extra}>')
        lines.extend(f"    <Label value={quoteattr(label)}/>" for label in names)
        lines.append(f"  </{_TAG_CASE[kind]}>")

    for kind in (RECTANGLE, KEYPOINT, POLYGON, BRUSH):
        if by_kind.get(kind):
            control(kind, _CONTROL_NAMES[kind], by_kind[kind])
    for kind in (KEYPOINT, RECTANGLE):
        if smart:
            control(kind, _SMART_NAMES[kind], smart, ' smart="true" smartOnly="true"')
    lines.append("</View>")
    return "\n".join(lines)


# --- hub detections -> prediction regions ----------------------------------------------------


def _region(control: Control, kind: str, width: int, height: int, label: str, value: dict[str, Any]) -> dict:
    value[kind] = [label]
    return {
        "from_name": control.name,
        "to_name": control.to_name,
        "type": kind,
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": value,
    }


def box_value(box: geometry_pb2.Box, width: int, height: int) -> dict[str, Any]:
    px, py = 100.0 / width, 100.0 / height
    return {"x": box.x * px, "y": box.y * py, "width": box.width * px, "height": box.height * py, "rotation": 0}


def point_value(point: geometry_pb2.Point, width: int, height: int) -> dict[str, Any]:
    return {"x": point.x * 100.0 / width, "y": point.y * 100.0 / height, "width": KEYPOINT_SIZE}


def polygon_value(polygon: geometry_pb2.Polygon, width: int, height: int) -> dict[str, Any]:
    px, py = 100.0 / width, 100.0 / height
    return {"points": [[p.x * px, p.y * py] for p in polygon.points], "closed": True}


def brush_value(mask: np.ndarray) -> dict[str, Any]:
    return {"format": "rle", "rle": brush.encode(mask)}


def region(config: Config, kind: str, width: int, height: int, label: str, value: dict[str, Any]) -> dict | None:
    """A result region for the project's control of ``kind``; None when the project has none."""
    control = config.output(kind)
    return None if control is None else _region(control, kind, width, height, label, value)


def predictions(
    detections: detection_pb2.Detections, config: Config, labels: set[str], width: int, height: int
) -> list[dict]:
    """Detections as result regions of the project's controls, each with its score. Detections of
    a label the project does not have (a model trained on other categories) are left out."""
    out: list[dict] = []

    def add(kind: str, label: str, score: float, value: dict[str, Any]) -> None:
        made = region(config, kind, width, height, label, value) if label in labels else None
        if made is not None:
            made["score"] = score
            out.append(made)

    for d in detections.boxes:
        add(RECTANGLE, d.category_name, d.confidence, box_value(d.box, width, height))
    for p in detections.points:
        add(KEYPOINT, p.category_name, p.confidence, point_value(p.point, width, height))
    for s in detections.segmentations:
        add(POLYGON, s.category_name, s.confidence, polygon_value(s.polygon, width, height))
    return out


# --- result regions -> hub shapes -------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """One region as the hub keeps it."""

    region_id: str
    category: category_pb2.Category
    shape: geometry_pb2.Shape


def _number(region_id: str, value: Mapping[str, Any], key: str) -> float:
    number = value.get(key)
    if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
        raise Refused(f"region {region_id}: value.{key} must be a finite number, got {number!r}")
    return float(number)


def _inside(region_id: str, what: str, x: float, y: float, width: int, height: int) -> tuple[float, float]:
    # Label Studio's percentages round-trip with float error: a hair outside the edge is the edge.
    slack = 1e-3
    if not (-slack <= x <= width + slack and -slack <= y <= height + slack):
        raise Refused(f"region {region_id}: {what} ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return min(max(x, 0.0), float(width)), min(max(y, 0.0), float(height))


def to_geometry(region_id: str, kind: str, value: Mapping[str, Any], width: int, height: int) -> geometry_pb2.Shape:
    sx, sy = width / 100.0, height / 100.0
    if kind == RECTANGLE:
        if abs(_number(region_id, value, "rotation") if "rotation" in value else 0.0) > 1e-6:
            raise Refused(f"region {region_id}: the hub keeps upright boxes; draw it without rotation")
        left, top = _number(region_id, value, "x"), _number(region_id, value, "y")
        right = left + _number(region_id, value, "width")
        bottom = top + _number(region_id, value, "height")
        x0, y0 = _inside(region_id, "corner", left * sx, top * sy, width, height)
        x1, y1 = _inside(region_id, "corner", right * sx, bottom * sy, width, height)
        if x1 <= x0 or y1 <= y0:
            raise Refused(f"region {region_id}: the rectangle has no area")
        return geometry_pb2.Shape(box=geometry_pb2.Box(x=x0, y=y0, width=x1 - x0, height=y1 - y0))
    if kind == KEYPOINT:
        x, y = _number(region_id, value, "x") * sx, _number(region_id, value, "y") * sy
        x, y = _inside(region_id, "keypoint", x, y, width, height)
        return geometry_pb2.Shape(point=geometry_pb2.Point(x=x, y=y))
    if kind == POLYGON:
        points = value.get("points")
        if not isinstance(points, list) or len(points) < 3:
            raise Refused(f"region {region_id}: a polygon needs a list of at least 3 points")
        outline = []
        for point in points:
            if not isinstance(point, list | tuple) or len(point) != 2:
                raise Refused(f"region {region_id}: each polygon point must be [x, y]")
            xy = {"x": point[0], "y": point[1]}
            x, y = _number(region_id, xy, "x") * sx, _number(region_id, xy, "y") * sy
            x, y = _inside(region_id, "point", x, y, width, height)
            outline.append(geometry_pb2.Point(x=x, y=y))
        return geometry_pb2.Shape(polygon=geometry_pb2.Polygon(points=outline))
    # BRUSH
    if value.get("format", "rle") != "rle" or not isinstance(value.get("rle"), list):
        raise Refused(f"region {region_id}: a brush mask must be given as value.rle (format rle)")
    try:
        mask = brush.decode(value["rle"], width, height)
    except brush.BadBrush as exc:
        raise Refused(f"region {region_id}: {exc}") from None
    if not mask.any():
        raise Refused(f"region {region_id}: the brush mask is empty")
    return geometry_pb2.Shape(mask=shapes.encode_mask(mask.astype(np.uint8)))


def to_shapes(
    result: Any, categories: Mapping[str, category_pb2.Category], prompts: set[str], width: int, height: int
) -> list[Shape]:
    """The objects of an annotation's result, each checked against the project's categories and the
    image; the first region that cannot be kept refuses the whole result (``Refused``)."""
    if not isinstance(result, list):
        raise Refused("annotation.result must be a list of regions")
    out: list[Shape] = []
    seen: set[str] = set()
    for index, item in enumerate(result):
        if not isinstance(item, dict):
            raise Refused(f"result[{index}] must be an object")
        region_id = str(item.get("id") or f"#{index}")
        kind = str(item.get("type", "")).lower()
        if item.get("from_name") in prompts:
            continue  # a smart tool's click or box: a prompt, not an object
        value = item.get("value")
        if not isinstance(value, dict):
            raise Refused(f"region {region_id}: value must be an object")
        if kind not in _TAG_CASE:
            raise Refused(
                f"region {region_id}: {kind or 'a region without type'} is not kept by the hub; "
                "use rectangles, keypoints, polygons or brush masks"
            )
        labels = value.get(kind)
        if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
            raise Refused(f"region {region_id}: give it exactly one label (value.{kind})")
        category = categories.get(labels[0])
        if category is None:
            raise Refused(f"region {region_id}: label {labels[0]!r} is no category of the project")
        if kind not in KINDS.get(category.type, ()):
            wanted = " or ".join(KINDS.get(category.type, ())) or "no region (it labels whole images)"
            raise Refused(
                f"region {region_id}: {labels[0]!r} is a {_TYPE_NAMES.get(category.type, '?')} category, "
                f"drawn as {wanted}, not {kind}"
            )
        if region_id in seen:
            raise Refused(f"region {region_id} appears twice in the result")
        seen.add(region_id)
        out.append(Shape(region_id, category, to_geometry(region_id, kind, value, width, height)))
    return out

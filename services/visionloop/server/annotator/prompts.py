"""What a user has said about the object so far: clicks and at most one box, and their checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.common.v1 import geometry_pb2
from visionloop.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class Click:
    x: float
    y: float
    positive: bool


@dataclass(frozen=True)
class BoxPrompt:
    """A box as pixel edges: x0 <= x < x1, y0 <= y < y1 (clipped to the image)."""

    x0: float
    y0: float
    x1: float
    y1: float


Item = Click | BoxPrompt


@dataclass(frozen=True)
class Prompts:
    """The effective prompts of a history: every click and the latest box."""

    clicks: tuple[Click, ...]
    box: BoxPrompt | None

    @classmethod
    def of(cls, items: list[Item]) -> Prompts:
        boxes = [item for item in items if isinstance(item, BoxPrompt)]
        return cls(tuple(item for item in items if isinstance(item, Click)), boxes[-1] if boxes else None)

    @property
    def positives(self) -> list[Click]:
        return [c for c in self.clicks if c.positive]

    @property
    def negatives(self) -> list[Click]:
        return [c for c in self.clicks if not c.positive]


def _finite(label: str, *values: float) -> None:
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgument(f"{label} has a non-finite coordinate")


def click(prompt: pb.PointPrompt, width: int, height: int) -> Click:
    x, y = prompt.point.x, prompt.point.y
    _finite("point", x, y)
    if not (0 <= x < width and 0 <= y < height):
        raise InvalidArgument(f"point ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return Click(x, y, prompt.positive)


def box(value: geometry_pb2.Box, width: int, height: int) -> BoxPrompt:
    _finite("box", value.x, value.y, value.width, value.height)
    if value.width < 1 or value.height < 1:
        raise InvalidArgument(
            f"box is {value.width:g} x {value.height:g} pixels; draw it at least 1 pixel wide and high"
        )
    x0, y0 = max(0.0, value.x), max(0.0, value.y)
    x1, y1 = min(float(width), value.x + value.width), min(float(height), value.y + value.height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise InvalidArgument(f"box lies outside the {width}x{height} image")
    return BoxPrompt(x0, y0, x1, y1)

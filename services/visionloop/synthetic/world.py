"""A small, deterministic synthetic field for robot vision: soil, weeds (boxes) and stems (points).

Every sample is a pure function of ``(seed, index, config)``: a data set can be regenerated
exactly, and any single frame rebuilt without generating the ones before it. Frames are HxWx3
uint8 BGR (what OpenCV and the detector's JPEG path produce); ground truth is in frame pixels.

Weeds are green leafy blobs of varying size, shade and brightness; stems are small pale discs
with a dark rim. Objects may overlap each other, be partly hidden by stones or straw, or be cut
by the frame border; weed boxes cover the visible part only, and a stem is only labelled while
its centre is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

WEED = "weed"
STEM = "stem"
CATEGORIES: tuple[str, ...] = (WEED, STEM)
CATEGORY_TYPES: dict[str, str] = {WEED: "box", STEM: "point"}

_MIN_VISIBLE = 0.35  # a weed hidden more than this is not labelled: annotators would skip it too
_OCCLUDED = -1


@dataclass(frozen=True)
class Annotation:
    """One ground-truth object: a box (x, y, width, height) for weeds, a point (x, y) for stems."""

    category: str
    box: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None

    @property
    def centre(self) -> tuple[float, float]:
        if self.point is not None:
            return self.point
        assert self.box is not None
        x, y, w, h = self.box
        return x + w / 2, y + h / 2


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # HxWx3 uint8 BGR
    annotations: tuple[Annotation, ...]
    index: int


@dataclass(frozen=True)
class WorldConfig:
    width: int = 320
    height: int = 240
    weeds: tuple[int, int] = (1, 4)  # inclusive range per frame
    stems: tuple[int, int] = (0, 3)
    weed_size: tuple[int, int] = (16, 56)  # blob diameter in pixels
    stem_radius: tuple[int, int] = (3, 6)
    occluders: tuple[int, int] = (0, 2)
    min_distance: float = 14.0  # between object centres, so no two objects share a heatmap cell


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Brown soil: a random base tone, low-frequency blotches and per-pixel grain."""
    base = np.array([rng.uniform(40, 70), rng.uniform(60, 95), rng.uniform(85, 125)], np.float32)  # BGR
    blotches = cv2.resize(rng.normal(0, 14, (height // 24 + 2, width // 24 + 2)).astype(np.float32), (width, height))
    grain = rng.normal(0, 7, (height, width, 3)).astype(np.float32)
    return base + blotches[..., None] + grain


def _weed_mask(rng: np.random.Generator, width: int, height: int, cx: float, cy: float, size: float) -> np.ndarray:
    """A few leaves (ellipses) radiating from the centre: irregular, but centred on (cx, cy)."""
    mask = np.zeros((height, width), np.uint8)
    leaves = int(rng.integers(3, 7))
    start = rng.uniform(0, 360)
    for k in range(leaves):
        angle = start + k * 360 / leaves + rng.uniform(-15, 15)
        length = size / 2 * rng.uniform(0.7, 1.0)
        rad = np.deg2rad(angle)
        centre = (cx + np.cos(rad) * length / 2, cy + np.sin(rad) * length / 2)
        axes = (max(1.0, length / 2), max(1.0, length / 2 * rng.uniform(0.35, 0.6)))
        cv2.ellipse(mask, (centre, (axes[0] * 2, axes[1] * 2), angle), 1, -1)
    cv2.circle(mask, (round(cx), round(cy)), max(1, round(size / 10)), 1, -1)
    return mask.astype(bool)


def _place(rng: np.random.Generator, config: WorldConfig, taken: list[tuple[float, float]]) -> tuple[float, float]:
    """A centre at least ``min_distance`` from the others (best effort), sometimes near the border."""
    for _ in range(50):
        cx, cy = rng.uniform(-4, config.width + 4), rng.uniform(-4, config.height + 4)
        if all(np.hypot(cx - x, cy - y) >= config.min_distance for x, y in taken):
            return cx, cy
    return cx, cy


def _occluder(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """A grey stone (ellipse) or a pale straw (thick line): its mask and colour."""
    mask = np.zeros((height, width), np.uint8)
    if rng.random() < 0.5:
        centre = (rng.uniform(0, width), rng.uniform(0, height))
        axes = (rng.uniform(8, 22), rng.uniform(6, 16))
        cv2.ellipse(mask, (centre, axes, rng.uniform(0, 180)), 1, -1)
        colour = np.full(3, rng.uniform(95, 150), np.float32)
    else:
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        angle, length = rng.uniform(0, np.pi), rng.uniform(30, 90)
        p2 = (int(p1[0] + np.cos(angle) * length), int(p1[1] + np.sin(angle) * length))
        cv2.line(mask, p1, p2, 1, int(rng.integers(2, 5)))
        colour = np.array([120, 190, 215], np.float32) * rng.uniform(0.8, 1.05)  # BGR straw
    return mask.astype(bool), colour


def generate(seed: int, index: int, config: WorldConfig | None = None) -> Sample:
    """Frame ``index`` of the data set ``seed``: the same arguments always give the same pixels."""
    config = config or WorldConfig()
    rng = np.random.default_rng([seed, index])
    width, height = config.width, config.height
    image = _background(rng, width, height)
    owner = np.full((height, width), _OCCLUDED - 1, np.int32)  # which object each pixel shows
    taken: list[tuple[float, float]] = []
    objects: list[tuple[str, tuple[float, float], int]] = []  # category, centre, drawn pixels

    kinds = [WEED] * int(rng.integers(config.weeds[0], config.weeds[1] + 1))
    kinds += [STEM] * int(rng.integers(config.stems[0], config.stems[1] + 1))
    rng.shuffle(kinds)  # draw order decides who overlaps whom
    hide_after = int(rng.integers(0, len(kinds) + 1))  # occluders come in between some objects
    for ident, kind in enumerate(kinds):
        if ident == hide_after:
            _draw_occluders(rng, config, image, owner)
        centre = _place(rng, config, taken)
        taken.append(centre)
        mask, colour = _object(rng, config, kind, centre)
        shade = rng.normal(0, 6, (height, width, 1)).astype(np.float32)
        image[mask] = (colour + shade)[mask]
        owner[mask] = ident
        objects.append((kind, centre, int(mask.sum())))
    if hide_after == len(kinds):
        _draw_occluders(rng, config, image, owner)

    brightness = rng.uniform(0.75, 1.25)  # sun and cloud
    pixels = np.clip(image * brightness, 0, 255).astype(np.uint8)
    return Sample(pixels, _annotations(objects, owner), index)


def _object(
    rng: np.random.Generator, config: WorldConfig, kind: str, centre: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The mask and BGR colour of one weed or stem."""
    width, height = config.width, config.height
    cx, cy = centre
    if kind == WEED:
        mask = _weed_mask(rng, width, height, cx, cy, rng.uniform(*config.weed_size))
        colour = np.array([rng.uniform(20, 60), rng.uniform(110, 190), rng.uniform(30, 90)], np.float32)
        return mask, colour
    radius = rng.uniform(*config.stem_radius)
    disc = np.zeros((height, width), np.uint8)
    cv2.circle(disc, (round(cx), round(cy)), round(radius), 1, -1)
    rim = np.zeros_like(disc)
    cv2.circle(rim, (round(cx), round(cy)), round(radius), 1, 2)
    mask = disc.astype(bool)
    colour = np.array([rng.uniform(150, 190), rng.uniform(200, 235), rng.uniform(210, 245)], np.float32)
    # The dark rim is part of the stem: paint it through the same mask with a darker colour.
    colour_map = np.where(rim.astype(bool)[..., None], colour * 0.45, colour)
    return mask, colour_map


def _draw_occluders(rng: np.random.Generator, config: WorldConfig, image: np.ndarray, owner: np.ndarray) -> None:
    for _ in range(int(rng.integers(config.occluders[0], config.occluders[1] + 1))):
        mask, colour = _occluder(rng, config.width, config.height)
        image[mask] = colour
        owner[mask] = _OCCLUDED


def _annotations(objects: list[tuple[str, tuple[float, float], int]], owner: np.ndarray) -> tuple[Annotation, ...]:
    """Ground truth from what stays visible: weed boxes around visible pixels, stems with a visible centre."""
    height, width = owner.shape
    result: list[Annotation] = []
    for ident, (kind, (cx, cy), drawn) in enumerate(objects):
        if kind == STEM:
            col, row = int(cx), int(cy)
            if 0 <= col < width and 0 <= row < height and owner[row, col] == ident:
                result.append(Annotation(STEM, point=(float(cx), float(cy))))
            continue
        rows, cols = np.nonzero(owner == ident)
        if drawn == 0 or rows.size < _MIN_VISIBLE * drawn or rows.size < 20:
            continue
        x1, y1, x2, y2 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
        result.append(Annotation(WEED, box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1))))
    return tuple(result)


def generate_samples(count: int, seed: int = 0, config: WorldConfig | None = None, start: int = 0) -> list[Sample]:
    """Samples ``start`` .. ``start + count - 1`` of the data set ``seed``."""
    return [generate(seed, index, config) for index in range(start, start + count)]


def categories() -> Sequence[tuple[str, str]]:
    """(name, type) of every category, in the order models output them."""
    return [(name, CATEGORY_TYPES[name]) for name in CATEGORIES]

"""A small, deterministic synthetic field for robot vision: soil, weeds and crops (boxes), stems (points).

Every sample is a pure function of ``(seed, index, config)``: a data set can be regenerated
exactly, and any single frame rebuilt without generating the ones before it. Frames are HxWx3
uint8 BGR (what OpenCV and the detector's JPEG path produce); ground truth is in frame pixels.

Weeds are green leafy blobs of varying size, shade and brightness; stems are small pale discs
with a dark rim; crops (off by default) are rosettes of broad, yellow-green leaves, each with a
pale midrib. Objects may overlap each other, be partly hidden by stones or straw, or be cut by
the frame border; boxes cover the visible part only, and a stem is only labelled while its
centre is visible.

The default ``WorldConfig`` is the plain field the first tests and models were built on, and
keeps giving the same frames. ``preset`` and ``at_difficulty`` turn on what makes real fields
hard: cluttered soil, scale changes, crowding, lighting, blur and sensor noise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from visionloop.lib.training_data import Annotation, Sample

WEED = "weed"
STEM = "stem"
CROP = "crop"
# Every category, in the order models output them; a config's subset keeps this order (see categories()).
CATEGORY_TYPES: dict[str, str] = {WEED: "box", STEM: "point", CROP: "box"}
ALL_CATEGORIES: tuple[str, ...] = tuple(CATEGORY_TYPES)
CATEGORIES: tuple[str, ...] = (WEED, STEM)  # what the default WorldConfig produces

_MIN_VISIBLE = 0.35  # a box object hidden more than this is not labelled: annotators would skip it too
_OCCLUDED = -1
# Seeds of the extra random streams, one per feature: the default stream (and so the default
# frames) never sees them, and turning one feature up leaves the others' draws alone.
_LAYOUT, _CLUTTER, _LIGHTING, _SENSOR = 1, 2, 3, 4

_Drawn = tuple[str, tuple[float, float], np.ndarray]  # category, centre, drawn pixels (flat indices)


@dataclass(frozen=True)
class WorldConfig:
    """What a frame may hold. Ranges are inclusive, sizes in pixels; every feature below
    ``occluders`` defaults to off, which keeps the default frames as they always were."""

    width: int = 320
    height: int = 240
    weeds: tuple[int, int] = (1, 4)  # inclusive range per frame
    stems: tuple[int, int] = (0, 3)
    weed_size: tuple[int, int] = (16, 56)  # blob diameter in pixels
    stem_radius: tuple[int, int] = (3, 6)
    occluders: tuple[int, int] = (0, 2)
    min_distance: float = 14.0  # between object centres, so no two objects share a heatmap cell
    crops: tuple[int, int] = (0, 0)
    crop_size: tuple[int, int] = (28, 64)  # seedling diameter in pixels
    scale: tuple[float, float] = (1.0, 1.0)  # per-frame size factor: the camera's height changes
    cluster: float = 0.0  # chance an object grows next to an earlier one: more overlap
    clutter: float = 0.0  # 0..1: soil variety, furrows, clods, straw bits, pebbles, debris (never labelled)
    lighting: float = 0.0  # 0..1: contrast, colour temperature, light gradient, vignette, shadow bands
    blur: float = 0.0  # largest defocus sigma in pixels
    noise: float = 0.0  # largest sensor noise sigma in grey levels
    # Soil grain from a cached noise field and object shading drawn only where painted: the same
    # look several times faster, but other frames than the first data sets (hence off by default).
    fast_noise: bool = False


PRESETS: dict[str, float] = {"easy": 0.0, "standard": 0.5, "hard": 1.0}


def at_difficulty(difficulty: float) -> WorldConfig:
    """All three categories, with crowding, clutter, scale range, lighting, blur and noise growing
    with ``difficulty`` from 0 (plain soil, clean frames) to 1 (busy, dim, blurred and noisy)."""
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], not {difficulty}")
    d = difficulty
    return WorldConfig(
        weeds=(1, 4 + int(2 * d)),
        stems=(0, 3 + int(2 * d)),
        crops=(1, 2 + int(d)),
        occluders=(0, 2 + int(3 * d)),
        scale=(1.0 - 0.35 * d, 1.0 + 0.35 * d),
        cluster=0.5 * d,
        clutter=d,
        lighting=d,
        blur=1.5 * d,
        noise=12.0 * d,
        fast_noise=True,
    )


def preset(name: str) -> WorldConfig:
    """The named preset (``PRESETS``) at 320x240; ``dataclasses.replace`` changes the frame size."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    return at_difficulty(PRESETS[name])


def categories(config: WorldConfig | None = None) -> Sequence[tuple[str, str]]:
    """(name, type) of every category ``config`` can produce, in the order models output them."""
    config = config or WorldConfig()
    counts = {WEED: config.weeds, STEM: config.stems, CROP: config.crops}
    return [(name, CATEGORY_TYPES[name]) for name in ALL_CATEGORIES if counts[name][1] > 0]


def _background(rng: np.random.Generator, width: int, height: int, fast: bool) -> np.ndarray:
    """Brown soil: a random base tone, low-frequency blotches and per-pixel grain."""
    base = np.array([rng.uniform(40, 70), rng.uniform(60, 95), rng.uniform(85, 125)], np.float32)  # BGR
    blotches = cv2.resize(rng.normal(0, 14, (height // 24 + 2, width // 24 + 2)).astype(np.float32), (width, height))
    soil = blotches[..., None] + base
    if fast:
        cv2.scaleAdd(_noise_window(rng, height, width), 7.0, soil, dst=soil)
        return soil
    grain = rng.normal(0, 7, (height, width, 3)).astype(np.float32)
    grain += soil
    return grain


# Soil tints (BGR gains): dry and pale, wet and dark, reddish clay, peat. Red gains at least the
# others': soil that turns grey-green under cool light would pass for a plant.
_SOILS = np.array([[1.25, 1.22, 1.18], [0.65, 0.68, 0.72], [0.8, 0.9, 1.15], [0.75, 0.78, 0.85]], np.float32)


def _clutter(rng: np.random.Generator, amount: float, image: np.ndarray) -> None:
    """Unlabelled soil detail under every object, in place: tone, furrows, clods, straw, pebbles, debris."""
    height, width = image.shape[:2]
    tint = 1 + (_SOILS[rng.integers(len(_SOILS))] - 1) * amount * rng.uniform(0.5, 1.0)
    # Furrows (rows of ridges) and clods are smooth: built on a quarter-size grid, then enlarged.
    rows, cols = height // 4 + 1, width // 4 + 1
    ys, xs = _grid(rows, cols, 4.0)
    angle, period = rng.uniform(0, np.pi), rng.uniform(28, 64)
    furrows = np.cos((xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period) + rng.uniform(0, 6.3))
    clods = cv2.resize(rng.normal(0, 1, (height // 6 + 2, width // 6 + 2)).astype(np.float32), (cols, rows))
    relief = cv2.resize((furrows * rng.uniform(8, 16) + clods * 10) * amount, (width, height))
    image *= tint
    image += relief[..., None]
    for _ in range(rng.poisson(10 * amount)):  # straw bits, thinner than straw occluders
        p1 = (rng.uniform(0, width), rng.uniform(0, height))
        turn, length = rng.uniform(0, np.pi), rng.uniform(10, 30)
        p2 = (p1[0] + np.cos(turn) * length, p1[1] + np.sin(turn) * length)
        colour = np.array([110, 175, 200]) * rng.uniform(0.6, 1.0)
        cv2.line(image, _pt(p1), _pt(p2), colour.tolist(), int(rng.integers(1, 3)))
    for _ in range(rng.poisson(14 * amount)):  # pebbles: a grey ellipse over its own shadow
        centre, size = (rng.uniform(0, width), rng.uniform(0, height)), (rng.uniform(3, 9), rng.uniform(2, 7))
        turn, grey = rng.uniform(0, 180), rng.uniform(70, 150)  # darker than stems
        cv2.ellipse(image, ((centre[0] + 1, centre[1] + 1), size, turn), (25, 30, 35), -1)
        cv2.ellipse(image, (centre, size, turn), (grey, grey * 1.02, grey * 1.05), -1)
    for _ in range(rng.poisson(6 * amount)):  # dead leaves and clods: dark brown flecks
        centre, size = (rng.uniform(0, width), rng.uniform(0, height)), (rng.uniform(3, 11), rng.uniform(2, 6))
        cv2.ellipse(image, (centre, size, rng.uniform(0, 180)), (rng.uniform(15, 35), 35, rng.uniform(45, 65)), -1)


def _pt(point: tuple[float, float]) -> tuple[int, int]:
    return round(point[0]), round(point[1])


def _grid(rows: int, cols: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y as a column, x as a row, float32) of a coarse grid every ``step`` pixels."""
    ys = np.arange(rows, dtype=np.float32)[:, None] * np.float32(step)
    xs = np.arange(cols, dtype=np.float32)[None, :] * np.float32(step)
    return ys, xs


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


def _crop_mask(
    rng: np.random.Generator, width: int, height: int, cx: float, cy: float, size: float
) -> tuple[np.ndarray, np.ndarray]:
    """A rosette of broad, overlapping leaves (a beet or lettuce seedling): the plant and its midribs.
    Compact on purpose: leaves that met only at a point would look like separate plants."""
    leaves = np.zeros((height, width), np.uint8)
    ribs = np.zeros_like(leaves)
    count = int(rng.integers(3, 6))
    start = rng.uniform(0, 360)
    for k in range(count):
        angle = start + k * 360 / count + rng.uniform(-10, 10)
        length = size / 2 * rng.uniform(0.75, 1.0)
        rad = np.deg2rad(angle)
        centre = (cx + np.cos(rad) * length * 0.45, cy + np.sin(rad) * length * 0.45)
        cv2.ellipse(leaves, (centre, (length * 1.1, length * rng.uniform(0.6, 0.8)), angle), 1, -1)
        tip = (cx + np.cos(rad) * length * 0.85, cy + np.sin(rad) * length * 0.85)
        cv2.line(ribs, _pt((cx, cy)), _pt(tip), 1, 1)
    mask = leaves.astype(bool)
    return mask, ribs.astype(bool) & mask


def _place(rng: np.random.Generator, config: WorldConfig, taken: list[tuple[float, float]]) -> tuple[float, float]:
    """A centre at least ``min_distance`` from the others (best effort), sometimes near the border."""
    for _ in range(50):
        cx, cy = rng.uniform(-4, config.width + 4), rng.uniform(-4, config.height + 4)
        if all(np.hypot(cx - x, cy - y) >= config.min_distance for x, y in taken):
            return cx, cy
    return cx, cy


def _near(
    rng: np.random.Generator, config: WorldConfig, taken: list[tuple[float, float]]
) -> tuple[float, float] | None:
    """A centre just beyond ``min_distance`` from an earlier object, so the two overlap; None if crowded."""
    for _ in range(20):
        ax, ay = taken[int(rng.integers(len(taken)))]
        turn, reach = rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 1.8) * config.min_distance
        cx, cy = ax + np.cos(turn) * reach, ay + np.sin(turn) * reach
        inside = -4 <= cx <= config.width + 4 and -4 <= cy <= config.height + 4
        if inside and all(np.hypot(cx - x, cy - y) >= config.min_distance for x, y in taken):
            return cx, cy
    return None


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
    layout = np.random.default_rng([seed, index, _LAYOUT])
    width, height = config.width, config.height
    image = _background(rng, width, height, config.fast_noise)
    if config.clutter > 0:
        _clutter(np.random.default_rng([seed, index, _CLUTTER]), config.clutter, image)
    owner = np.full((height, width), _OCCLUDED - 1, np.int32)  # which object each pixel shows
    # Painting goes through flat pixel indices: several times faster than 2-D boolean masks.
    flat, owned = image.reshape(-1, 3), owner.reshape(-1)
    taken: list[tuple[float, float]] = []
    objects: list[_Drawn] = []

    scale = layout.uniform(*config.scale) if config.scale != (1.0, 1.0) else 1.0
    kinds = [WEED] * int(rng.integers(config.weeds[0], config.weeds[1] + 1))
    kinds += [STEM] * int(rng.integers(config.stems[0], config.stems[1] + 1))
    kinds += [CROP] * int(layout.integers(config.crops[0], config.crops[1] + 1))
    rng.shuffle(kinds)  # draw order decides who overlaps whom
    hide_after = int(rng.integers(0, len(kinds) + 1))  # occluders come in between some objects
    for ident, kind in enumerate(kinds):
        if ident == hide_after:
            _draw_occluders(rng, config, flat, owned)
        centre = None
        if taken and config.cluster > 0 and layout.random() < config.cluster:
            centre = _near(layout, config, taken)
        centre = centre or _place(rng, config, taken)
        taken.append(centre)
        mask, colours = _object(rng, config, kind, centre, scale)
        pixels = np.flatnonzero(mask)
        flat[pixels] = colours + _shade(rng, kind, pixels, config)[:, None]
        owned[pixels] = ident
        objects.append((kind, centre, pixels))
    if hide_after == len(kinds):
        _draw_occluders(rng, config, flat, owned)

    image *= rng.uniform(0.75, 1.25)  # sun and cloud
    if config.lighting > 0:
        _lighting(np.random.default_rng([seed, index, _LIGHTING]), config.lighting, image)
    if config.blur > 0 or config.noise > 0:
        _sensor(np.random.default_rng([seed, index, _SENSOR]), config, image)
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    return Sample(pixels, _annotations(objects, owner), index)


def _object(
    rng: np.random.Generator, config: WorldConfig, kind: str, centre: tuple[float, float], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """The mask of one weed, stem or crop, and its BGR colour: one for all, or one per masked pixel."""
    width, height = config.width, config.height
    cx, cy = centre
    if kind == WEED:
        mask = _weed_mask(rng, width, height, cx, cy, rng.uniform(*config.weed_size) * scale)
        colour = np.array([rng.uniform(20, 60), rng.uniform(110, 190), rng.uniform(30, 90)], np.float32)
        return mask, colour
    if kind == CROP:
        mask, ribs = _crop_mask(rng, width, height, cx, cy, rng.uniform(*config.crop_size) * scale)
        colour = np.array([rng.uniform(60, 100), rng.uniform(165, 215), rng.uniform(120, 165)], np.float32)
        return mask, np.where(ribs[mask][:, None], np.minimum(colour * 1.25, 250), colour)
    radius = rng.uniform(*config.stem_radius)
    if scale != 1.0:
        radius = max(radius * scale, 2.5)  # smaller would be all rim
    disc = np.zeros((height, width), np.uint8)
    cv2.circle(disc, (round(cx), round(cy)), round(radius), 1, -1)
    rim = np.zeros_like(disc)
    cv2.circle(rim, (round(cx), round(cy)), round(radius), 1, 2)
    mask = disc.astype(bool)
    colour = np.array([rng.uniform(150, 190), rng.uniform(200, 235), rng.uniform(210, 245)], np.float32)
    # The dark rim is part of the stem: paint it through the same mask with a darker colour.
    return mask, np.where(rim[mask].astype(bool)[:, None], colour * 0.45, colour)


def _shade(rng: np.random.Generator, kind: str, pixels: np.ndarray, config: WorldConfig) -> np.ndarray:
    """Per-pixel brightness variation over an object's ``pixels`` (flat indices)."""
    if config.fast_noise or kind == CROP:  # crops are newer than the default frames
        return rng.normal(0, 6, pixels.size).astype(np.float32)
    # The first frames drew a whole frame per object; doing so still keeps them the same.
    return rng.normal(0, 6, config.height * config.width)[pixels].astype(np.float32)


def _draw_occluders(rng: np.random.Generator, config: WorldConfig, flat: np.ndarray, owned: np.ndarray) -> None:
    for _ in range(int(rng.integers(config.occluders[0], config.occluders[1] + 1))):
        mask, colour = _occluder(rng, config.width, config.height)
        pixels = np.flatnonzero(mask)
        flat[pixels] = colour
        owned[pixels] = _OCCLUDED


def _lighting(rng: np.random.Generator, amount: float, image: np.ndarray) -> None:
    """Light that is not the sun overhead, in place: flatter or harsher contrast, warmer or cooler
    colour, a gradient across the frame, sometimes a vignette and a soft shadow band (the robot's boom)."""
    height, width = image.shape[:2]
    contrast = 1 + amount * rng.uniform(-0.45, 0.2)
    warmth = amount * rng.uniform(-0.12, 0.18)  # warm light lifts red and lowers blue; cool light less so
    channels = np.array([1 - warmth, 1, 1 + warmth], np.float32)
    # The gain map is smooth: computed on a quarter-size grid in units of half the frame, then enlarged.
    half = max(width, height) / 2
    ys, xs = _grid(height // 4 + 1, width // 4 + 1, 4.0)
    ys, xs = (ys - height / 2) / half, (xs - width / 2) / half
    turn = rng.uniform(0, 2 * np.pi)
    gain = 1 + amount * rng.uniform(0, 0.35) * (xs * math.cos(turn) + ys * math.sin(turn))
    if rng.random() < amount:
        gain *= 1 - amount * rng.uniform(0.1, 0.4) * (xs * xs + ys * ys)
    if rng.random() < 0.6 * amount:
        turn, offset = rng.uniform(0, np.pi), rng.uniform(-0.8, 0.8)
        reach, soft = rng.uniform(0.08, 0.35), rng.uniform(0.03, 0.12)
        distance = np.abs(xs * math.cos(turn) + ys * math.sin(turn) - offset)
        gain *= 1 - amount * rng.uniform(0.25, 0.55) * np.clip((reach + soft - distance) / (2 * soft), 0, 1)
    # (image - mean) * contrast + mean, per channel, then the gain map: three passes over the frame.
    mean = np.array(cv2.mean(image)[:3], np.float32)
    image *= channels * contrast
    image += channels * mean * (1 - contrast)
    image *= cv2.resize(gain, (width, height))[..., None]


def _sensor(rng: np.random.Generator, config: WorldConfig, image: np.ndarray) -> None:
    """Defocus (stretched up to 2x along the direction of travel, up the frame) and gaussian noise, in place."""
    height, width = image.shape[:2]
    sigma = rng.uniform(0, config.blur)
    if sigma > 0.3:
        cv2.GaussianBlur(image, (0, 0), sigma, dst=image, sigmaY=sigma * rng.uniform(1.0, 2.0))
    if config.noise > 0:
        strength = config.noise * rng.uniform(0.5, 1.0)
        cv2.scaleAdd(_noise_window(rng, height, width), strength, image, dst=image)


_NOISE_MARGIN = 256


def _noise_window(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Standard gaussian noise, HxWx3 float32 (read-only). Fresh noise costs as much as the rest of
    a frame; a randomly placed window of one cached field, randomly negated, is as unpredictable."""
    dy, dx = int(rng.integers(_NOISE_MARGIN)), int(rng.integers(_NOISE_MARGIN))
    field = _noise_field(height, width, bool(rng.random() < 0.5))
    return field[dy : dy + height, dx : dx + width]


@functools.lru_cache(maxsize=8)
def _noise_field(height: int, width: int, negated: bool) -> np.ndarray:
    shape = (height + _NOISE_MARGIN, width + _NOISE_MARGIN, 3)
    field = np.random.default_rng(_SENSOR).standard_normal(shape, np.float32) * (-1 if negated else 1)
    field.flags.writeable = False  # shared by every frame
    return field


def _annotations(objects: list[_Drawn], owner: np.ndarray) -> tuple[Annotation, ...]:
    """Ground truth from what stays visible: boxes around visible pixels, stems with a visible centre."""
    height, width = owner.shape
    owned = owner.reshape(-1)
    result: list[Annotation] = []
    for ident, (kind, (cx, cy), drawn) in enumerate(objects):
        if CATEGORY_TYPES[kind] == "point":
            col, row = int(cx), int(cy)
            if 0 <= col < width and 0 <= row < height and owner[row, col] == ident:
                result.append(Annotation(kind, point=(float(cx), float(cy))))
            continue
        visible = drawn[owned[drawn] == ident]
        if drawn.size == 0 or visible.size < _MIN_VISIBLE * drawn.size or visible.size < 20:
            continue
        rows, cols = np.divmod(visible, width)
        x1, y1, x2, y2 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
        result.append(Annotation(kind, box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1))))
    return tuple(result)


def generate_samples(count: int, seed: int = 0, config: WorldConfig | None = None, start: int = 0) -> list[Sample]:
    """Samples ``start`` .. ``start + count - 1`` of the data set ``seed``."""
    return [generate(seed, index, config) for index in range(start, start + count)]

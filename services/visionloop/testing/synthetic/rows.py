"""A robot's view of a field: the frames of a camera driving along a crop row.

``world.generate`` draws every frame on its own; a robot's frames are not like that. A robot
drives along a row with its camera looking down, and the ground moves ``step`` pixels between
two frames, so consecutive frames share most of their pixels (192-pixel frames, 8-pixel steps: a
plant stays in view for 24 frames). Most ground is routine: a line of crop plants down the
middle, a few weeds and stems on lightly cluttered soil. Now and then the robot meets something
else (``EVENTS``, with the rates of ``RowConfig``):

- ``patch``: a dense cluster of weeds, overlapping each other;
- ``thistle``: a rare weed of its own category (``THISTLE``: narrow, spiky grey-green leaves
  around a purple head), alone or two or three together;
- ``straw``: a stretch of straw and stones lying over the plants, hiding parts of them;
- ``bump``: a few frames of motion blur along the direction of travel (a rut in the track);

and from some point of the season on the light is different for good (``SHIFTED``: low evening
sun, dim, warm and flat). Every frame says which of these it shows (``RowFrame.situations``;
``ROUTINE`` when none), so held-out sets can be composed from them and results broken down by them.

A drive is a pure function of ``(seed, drive, config)``: its frames can be regenerated exactly.
The ground of a drive is rendered once as a strip (soil, plants, straw), each frame is a window of
it with its own light, blur and sensor noise. Objects are labelled as ``world`` labels them: a
box around the visible part (hidden by no more than 65 %), a stem while its centre is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from visionloop.lib.training_data import Annotation, Sample
from visionloop.testing.synthetic import world
from visionloop.testing.synthetic.world import CROP, STEM, WEED, WorldConfig

THISTLE = "thistle"
# (name, type) in the order models output them: the world's three, then the rare weed.
CATEGORIES: tuple[tuple[str, str], ...] = ((WEED, "box"), (STEM, "point"), (CROP, "box"), (THISTLE, "box"))

ROUTINE = "routine"
PATCH = "patch"
STRAW = "straw"
BUMP = "bump"
SHIFTED = "shifted"
EVENTS: tuple[str, ...] = (PATCH, THISTLE, STRAW, BUMP)
SITUATIONS: tuple[str, ...] = (ROUTINE, *EVENTS, SHIFTED)

_MIN_VISIBLE = 0.35  # as world: a box object hidden more than this is not labelled
_MIN_PIXELS = 20
_OCCLUDED = -1
_FREE = -2
# Extra random streams of a drive, so one feature's draws leave the others' alone.
_GROUND, _EVENTS, _FRAMES = 11, 12, 13


@dataclass(frozen=True)
class RowConfig:
    """What a drive looks like. Rates of ground events are per 1000 pixels of row driven (a 120-frame
    drive covers about 1000), bumps per 100 frames; sizes in pixels."""

    width: int = 256
    height: int = 192
    step: float = 8.0  # ground travelled between two frames
    crop_spacing: tuple[float, float] = (52.0, 76.0)  # between crop plants along the row
    crop_size: tuple[float, float] = (28.0, 52.0)
    weed_size: tuple[float, float] = (16.0, 44.0)
    thistle_size: tuple[float, float] = (30.0, 52.0)
    weeds: float = 0.8  # routine weeds per frame-sized area (Poisson mean)
    stems: float = 1.0  # stems per frame-sized area
    clutter: float = 0.35  # soil detail (world's clutter)
    noise: float = 5.0  # largest sensor noise sigma in grey levels
    patches: float = 0.4  # weed patches per 1000 px
    thistles: float = 0.3  # thistle encounters per 1000 px
    straw: float = 0.3  # straw stretches per 1000 px
    straw_length: tuple[float, float] = (120.0, 260.0)
    bumps: float = 1.0  # per 100 frames
    bump_frames: tuple[int, int] = (4, 9)
    blur: tuple[float, float] = (7.0, 15.0)  # motion blur length in pixels during a bump

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError("frames must be at least 32x32 pixels")
        if self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}")


@dataclass(frozen=True)
class RowFrame:
    """One frame of a drive: the sample (pixels and ground truth) and the situations it shows."""

    sample: Sample
    situations: frozenset[str]


@dataclass
class _Object:
    kind: str
    event: str  # ROUTINE, PATCH or THISTLE: what placed it
    centre: tuple[float, float]  # in strip pixels
    rows: np.ndarray = field(repr=False)  # drawn pixels (strip rows, cols)
    cols: np.ndarray = field(repr=False)
    visible: np.ndarray = field(default_factory=lambda: np.zeros(0, bool), repr=False)


@dataclass
class _Strip:
    image: np.ndarray  # float32 BGR, the whole ground of the drive
    objects: list[_Object]
    straw: list[tuple[float, float]]  # strip row ranges covered with straw
    length: int


def categories() -> Sequence[tuple[str, str]]:
    return CATEGORIES


def drive(
    seed: int,
    drive: int,
    frames: int,
    config: RowConfig | None = None,
    *,
    shifted: bool = False,
    force: Sequence[str] = (),
    spacing: float | None = None,
) -> list[RowFrame]:
    """``frames`` frames of drive ``drive`` of field ``seed``, in the order the camera takes them.

    ``shifted``: under the changed light. ``force``: ground events (``PATCH``, ``THISTLE``,
    ``STRAW``) placed in view of the middle frame on top of the random ones, and ``BUMP`` blurring
    it, for held-out sets that must show them. ``spacing``: ground between frames instead of
    ``config.step`` (a frame height or more: frames that share nothing).
    """
    config = config or RowConfig()
    if frames < 1:
        raise ValueError(f"a drive has at least one frame, got {frames}")
    unknown = set(force) - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown events {sorted(unknown)}; use {', '.join(EVENTS)}")
    step = config.step if spacing is None else spacing
    length = int(np.ceil((frames - 1) * step)) + config.height
    strip = _ground(seed, drive, config, length, [f for f in force if f != BUMP], frames, step)
    blurred = _bumps(np.random.default_rng([seed, drive, _EVENTS, 1]), config, frames, BUMP in force)
    rng = np.random.default_rng([seed, drive, _FRAMES])
    sun = _sun(rng, frames)
    result = []
    for index in range(frames):
        top = length - config.height - round(index * step)  # the ground moves down the frame
        result.append(_frame(rng, config, strip, top, index, sun[index], blurred[index], shifted))
    return result


def _ground(
    seed: int, drive: int, config: RowConfig, length: int, force: Sequence[str], frames: int, step: float
) -> _Strip:
    rng = np.random.default_rng([seed, drive, _GROUND])
    events = np.random.default_rng([seed, drive, _EVENTS])
    width = config.width
    image = world._background(rng, width, length, True)
    if config.clutter > 0:
        world._clutter(rng, config.clutter, image)
    owner = np.full((length, width), _FREE, np.int32)
    placed: list[tuple[str, str, tuple[float, float], float]] = []  # kind, event, centre, size

    # Routine: crops down the middle of the row, weeds and stems anywhere.
    y = rng.uniform(0, config.crop_spacing[1])
    while y < length + 20:
        x = width / 2 + rng.normal(0, width * 0.03)
        placed.append((CROP, ROUTINE, (x, y), rng.uniform(*config.crop_size)))
        y += rng.uniform(*config.crop_spacing)
    areas = length / config.height
    for kind, mean in ((WEED, config.weeds), (STEM, config.stems)):
        for _ in range(rng.poisson(mean * areas)):
            size = rng.uniform(*config.weed_size) if kind == WEED else 0.0
            placed.append((kind, ROUTINE, (rng.uniform(-4, width + 4), rng.uniform(-4, length + 4)), size))

    # Events: a Poisson process along the row, and the forced ones in view of the middle frame.
    middle = length - config.height / 2 - (frames - 1) // 2 * step
    straw: list[tuple[float, float]] = []
    for event, rate in ((PATCH, config.patches), (THISTLE, config.thistles), (STRAW, config.straw)):
        where = list(events.uniform(0, length, events.poisson(rate * length / 1000)))
        if event in force:
            where.append(middle + events.uniform(-0.25, 0.25) * config.height)
        for at in where:
            if event == STRAW:
                reach = events.uniform(*config.straw_length)
                straw.append((at - reach / 2, at + reach / 2))
            elif event == PATCH:
                placed += _patch(events, config, at)
            else:
                placed += _thistles(events, config, at)

    objects: list[_Object] = []
    image_flat, owned = image.reshape(-1, 3), owner.reshape(-1)
    for ident, (kind, event, centre, size) in enumerate(placed):
        pixels, colours = _draw(rng, config, length, kind, centre, size)
        image_flat[pixels] = colours + rng.normal(0, 6, pixels.size).astype(np.float32)[:, None]
        owned[pixels] = ident
        rows, cols = np.divmod(pixels, width)
        objects.append(_Object(kind, event, centre, rows, cols))
    for start, end in straw:
        _lay_straw(events, config, image, owner, start, end)
    for ident, obj in enumerate(objects):
        obj.visible = owner[obj.rows, obj.cols] == ident
    return _Strip(image, objects, straw, length)


def _patch(rng: np.random.Generator, config: RowConfig, at: float) -> list[tuple[str, str, tuple[float, float], float]]:
    """7 to 14 weeds around one spot, close enough to overlap."""
    cx = rng.uniform(0.2, 0.8) * config.width
    spread = rng.uniform(22, 40)
    count = int(rng.integers(7, 15))
    return [
        (WEED, PATCH, (cx + rng.normal(0, spread), at + rng.normal(0, spread)), rng.uniform(*config.weed_size))
        for _ in range(count)
    ]


def _thistles(
    rng: np.random.Generator, config: RowConfig, at: float
) -> list[tuple[str, str, tuple[float, float], float]]:
    cx = rng.uniform(0.15, 0.85) * config.width
    found = []
    for _ in range(int(rng.choice([1, 1, 2, 3]))):
        centre = (cx + rng.uniform(-40, 40), at + rng.uniform(-30, 30))
        found.append((THISTLE, THISTLE, centre, rng.uniform(*config.thistle_size)))
    return found


def _draw(
    rng: np.random.Generator, config: RowConfig, length: int, kind: str, centre: tuple[float, float], size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Flat strip indices of one object's pixels and their BGR colours (one for all, or one each)."""
    width = config.width
    cx, cy = centre
    if kind == THISTLE:
        return _thistle(rng, width, length, cx, cy, size)
    # world draws them: one size for this object, in a config as big as the strip.
    size_range = (int(size), int(size) + 1)
    shape = WorldConfig(width=width, height=length, weed_size=size_range, crop_size=size_range)
    mask, colours = world._object(rng, shape, kind, centre, 1.0)
    pixels = np.flatnonzero(mask)
    return pixels, colours


def _thistle(
    rng: np.random.Generator, width: int, length: int, cx: float, cy: float, size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Narrow, spiky grey-green leaves radiating from a purple flower head."""
    mask = np.zeros((length, width), np.uint8)
    head = np.zeros_like(mask)
    leaves = int(rng.integers(6, 10))
    start = rng.uniform(0, 360)
    for k in range(leaves):
        angle = np.deg2rad(start + k * 360 / leaves + rng.uniform(-10, 10))
        reach = size / 2 * rng.uniform(0.75, 1.0)
        tip = (cx + np.cos(angle) * reach, cy + np.sin(angle) * reach)
        side = np.array([-np.sin(angle), np.cos(angle)]) * reach * 0.12
        base = np.array([cx, cy])
        # A leaf is a thin triangle with a spine halfway out on either side.
        middle = base + (np.array(tip) - base) * 0.55
        points = np.array([base + side, middle + side * 2.2, tip, middle - side * 2.2, base - side])
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    cv2.circle(head, (round(cx), round(cy)), max(2, round(size / 7)), 1, -1)
    mask |= head
    pixels = np.flatnonzero(mask)
    leaf = np.array([rng.uniform(85, 110), rng.uniform(120, 150), rng.uniform(75, 100)], np.float32)  # BGR
    flower = np.array([rng.uniform(150, 185), rng.uniform(40, 70), rng.uniform(150, 190)], np.float32)
    colours = np.where(head.reshape(-1)[pixels][:, None].astype(bool), flower, leaf)
    return pixels, colours.astype(np.float32)


def _lay_straw(
    rng: np.random.Generator, config: RowConfig, image: np.ndarray, owner: np.ndarray, start: float, end: float
) -> None:
    """Straw and stones over the plants between strip rows ``start`` and ``end``."""
    width = config.width
    reach = max(1.0, end - start)
    for _ in range(int(rng.poisson(reach / 7))):
        mask = np.zeros(owner.shape, np.uint8)
        y = rng.uniform(start, end)
        if rng.random() < 0.75:
            p1 = np.array([rng.uniform(0, width), y])
            turn, long = rng.uniform(0, np.pi), rng.uniform(30, 90)
            p2 = p1 + np.array([np.cos(turn), np.sin(turn)]) * long
            cv2.line(mask, world._pt(tuple(p1)), world._pt(tuple(p2)), 1, int(rng.integers(2, 6)))
            colour = np.array([120, 190, 215], np.float32) * rng.uniform(0.75, 1.05)
        else:
            axes = (rng.uniform(8, 22), rng.uniform(6, 16))
            cv2.ellipse(mask, ((rng.uniform(0, width), y), axes, rng.uniform(0, 180)), 1, -1)
            colour = np.full(3, rng.uniform(95, 150), np.float32)
        hidden = mask.astype(bool)
        image[hidden] = colour
        owner[hidden] = _OCCLUDED


def _bumps(rng: np.random.Generator, config: RowConfig, frames: int, force: bool) -> np.ndarray:
    """Per frame: the motion blur length in pixels (0: none)."""
    blur = np.zeros(frames)
    index = 0
    while index < frames:
        if rng.random() < config.bumps / 100:
            span = int(rng.integers(config.bump_frames[0], config.bump_frames[1] + 1))
            blur[index : index + span] = rng.uniform(*config.blur)
            index += span
        index += 1
    if force:
        middle = (frames - 1) // 2
        blur[middle] = blur[middle] or rng.uniform(*config.blur)
    return blur


def _sun(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Brightness per frame: one level for the drive, drifting slowly as clouds pass."""
    level = rng.uniform(0.85, 1.15)
    drift = np.cumsum(rng.normal(0, 0.01, frames))
    return np.clip(level + drift, 0.7, 1.3)


def _frame(
    rng: np.random.Generator,
    config: RowConfig,
    strip: _Strip,
    top: int,
    index: int,
    sun: float,
    blur: float,
    shifted: bool,
) -> RowFrame:
    height, width = config.height, config.width
    image = strip.image[top : top + height].copy()
    image *= sun
    if shifted:
        _evening(image)
    if blur > 0:
        length = max(3, round(blur) | 1)
        kernel = np.zeros((length, length), np.float32)
        kernel[:, length // 2] = 1.0 / length  # along the direction of travel: up and down the frame
        image = cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if config.noise > 0:
        strength = config.noise * rng.uniform(0.5, 1.0)
        cv2.scaleAdd(world._noise_window(rng, height, width), strength, image, dst=image)
    pixels = np.clip(image, 0, 255).astype(np.uint8)
    annotations, shown = _annotations(strip, top, height, width)
    situations = set(shown)
    if any(start < top + height and end > top for start, end in strip.straw):
        situations.add(STRAW)
    if blur > 0:
        situations.add(BUMP)
    if shifted:
        situations.add(SHIFTED)
    return RowFrame(Sample(pixels, annotations, index), frozenset(situations or {ROUTINE}))


def _evening(image: np.ndarray) -> None:
    """Low evening sun, in place: much dimmer, warm, flat, and brighter on one side of the frame."""
    width = image.shape[1]
    mean = np.array(cv2.mean(image)[:3], np.float32)
    contrast = 0.7
    image -= mean
    image *= contrast
    image += mean
    image *= np.array([0.62, 0.8, 1.05], np.float32) * 0.62  # BGR: blue light gone, red kept
    ramp = np.linspace(0.8, 1.2, width, dtype=np.float32)[None, :, None]
    image *= ramp


def _annotations(strip: _Strip, top: int, height: int, width: int) -> tuple[tuple[Annotation, ...], set[str]]:
    """Ground truth of the window starting at strip row ``top``, and the events its labelled objects belong to."""
    result: list[Annotation] = []
    events: set[str] = set()
    bottom = top + height
    for ident, obj in enumerate(strip.objects):
        if obj.kind == STEM:
            cx, cy = obj.centre
            col, row = int(cx), int(cy)
            if 0 <= col < width and top <= row < bottom and _owner_at(strip, obj, row, col, ident):
                result.append(Annotation(STEM, point=(float(cx), float(cy - top))))
                events.add(obj.event)
            continue
        inside = (obj.rows >= top) & (obj.rows < bottom)
        drawn = int(inside.sum())
        if drawn == 0:
            continue
        seen = inside & obj.visible
        count = int(seen.sum())
        if count < _MIN_VISIBLE * drawn or count < _MIN_PIXELS:
            continue
        rows, cols = obj.rows[seen] - top, obj.cols[seen]
        x1, y1, x2, y2 = cols.min(), rows.min(), cols.max() + 1, rows.max() + 1
        result.append(Annotation(obj.kind, box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1))))
        events.add(obj.event)
    events.discard(ROUTINE)
    return tuple(result), events


def _owner_at(strip: _Strip, obj: _Object, row: int, col: int, ident: int) -> bool:
    """Whether the stem's centre pixel shows the stem (nothing lies over it)."""
    hit = (obj.rows == row) & (obj.cols == col)
    return bool(hit.any() and obj.visible[hit].all())

"""Generated high-contrast objects with exact masks, and the standard click simulation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from visionloop.lib.geometry import mask_iou
from visionloop.server.annotator import masks

WIDTH, HEIGHT = 320, 240
COLOURS = ((40, 40, 220), (220, 60, 40), (40, 200, 230), (200, 40, 200), (30, 210, 60))


@dataclass
class Scene:
    image: np.ndarray  # BGR
    mask: np.ndarray  # the object's exact mask
    distractor: np.ndarray  # a patch of another colour touching the object (may be empty)

    def png(self) -> bytes:
        ok, data = cv2.imencode(".png", self.image)
        assert ok
        return data.tobytes()

    @property
    def box(self) -> tuple[int, int, int, int]:
        b = masks.box(self.mask)
        return int(b.x), int(b.y), int(b.width), int(b.height)

    @property
    def rough_box(self) -> tuple[int, int, int, int]:
        """A box around the object and the object beside it, as a hurried annotator draws it."""
        b = masks.box(self.mask | self.distractor)
        return int(b.x), int(b.y), int(b.width), int(b.height)


def _shape(rng: np.random.Generator, kind: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    cx, cy = rng.uniform(110, 210), rng.uniform(85, 155)
    size = rng.uniform(35, 60)
    if kind == 0:
        axes = (int(size), int(size * rng.uniform(0.5, 0.9)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    elif kind == 1:
        rect = ((cx, cy), (size * 1.6, size * rng.uniform(0.7, 1.2)), rng.uniform(0, 90))
        cv2.fillPoly(mask, [cv2.boxPoints(rect).astype(np.int32)], 1)
    else:
        angles = np.linspace(0, 2 * np.pi, 11)[:-1] + rng.uniform(0, 1)
        radii = np.where(np.arange(10) % 2 == 0, size, size * 0.5)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def scene(seed: int, distractor: bool = False, contrast: float = 1.0) -> Scene:
    """One object; ``contrast`` < 1 blends its colour toward the background's."""
    rng = np.random.default_rng(seed)
    background = rng.normal(110, 12, (HEIGHT, WIDTH, 3)) + np.array([0, 20, -10])
    image = np.clip(background, 0, 255).astype(np.uint8)
    mask = _shape(rng, seed % 3)
    grey = np.array([110.0, 130.0, 100.0])
    colour = grey + contrast * (np.array(COLOURS[seed % len(COLOURS)]) - grey)
    shading = np.linspace(0.65, 1.25, WIDTH)[None, :, None] * np.ones((HEIGHT, 1, 1))  # light from one side
    lit = colour * shading + rng.normal(0, 10, (HEIGHT, WIDTH, 3))
    image[mask] = np.clip(lit[mask], 0, 255).astype(np.uint8)
    extra = np.zeros_like(mask)
    if distractor:
        # A second, slightly darker object of the same hue touching this one, which a rough box
        # takes in (the way two overlapping leaves look alike).
        ys, xs = np.nonzero(mask)
        corner = (int(xs.max() - 4), int(ys.max() - 4))
        blob = np.zeros((HEIGHT, WIDTH), np.uint8)
        cv2.circle(blob, corner, 16, 1, -1)
        extra = blob.astype(bool) & ~mask
        image[extra] = np.clip(lit[extra] * 0.78, 0, 255).astype(np.uint8)
    return Scene(image, mask, extra)


def next_click(truth: np.ndarray, predicted: np.ndarray | None) -> tuple[float, float, bool]:
    """The standard simulated annotator: click the interior of the largest error region."""
    if predicted is None:
        error, positive = truth, True
    else:
        false_negative, false_positive = truth & ~predicted, predicted & ~truth
        fn_depth = cv2.distanceTransform(np.pad(false_negative.astype(np.uint8), 1), cv2.DIST_L2, 5)
        fp_depth = cv2.distanceTransform(np.pad(false_positive.astype(np.uint8), 1), cv2.DIST_L2, 5)
        positive = fn_depth.max() >= fp_depth.max()
        error = false_negative if positive else false_positive
    depth = cv2.distanceTransform(np.pad(error.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return float(x) + 0.5, float(y) + 0.5, positive


def clicks_to_reach(
    truth: np.ndarray, click: Callable[[float, float, bool], np.ndarray], target: float = 0.85, limit: int = 20
) -> int:
    """Clicks until the proposal reaches ``target`` IoU (``limit`` + 1 when it never does)."""
    predicted = None
    for count in range(1, limit + 1):
        predicted = click(*next_click(truth, predicted))
        if mask_iou(predicted, truth) >= target:
            return count
    return limit + 1

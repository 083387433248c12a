"""The classical backend: GrabCut from a box, flood fill from a click, refined by clicks. No weights.

A box starts GrabCut with "probably object" inside and "background" outside. A click without a
box flood-fills the colour region under it. Every positive click is a small disk of certain
object, every negative click a small disk of certain background; the colour region a negative
click lands on becomes background too (unless a positive click lies in it), which is what lets
one click remove a wrongly included part. The result keeps only the connected parts that hold a
positive click (or the largest part when there are none).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from visionloop.runtime.errors import InvalidArgument
from visionloop.server.annotator.prompts import Click, Prompts

ITERATIONS = 5
FLOOD_TOLERANCE = 32  # per channel, against the clicked colour
MIN_SAMPLES = 16  # GrabCut's colour models need samples on both sides
_SQUARE3 = np.ones((3, 3), np.uint8)  # cv2.dilate's default kernel (what None stands for)
CLICK_RADIUS_FRACTION = 0.012


@dataclass
class Result:
    mask: np.ndarray  # bool, image size
    score: float


class ClassicalImage:
    """One decoded image prepared for repeated prompts."""

    name = "classical"

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        self.height, self.width = image.shape[:2]
        self._smooth = cv2.GaussianBlur(image, (5, 5), 0)
        self._radius = max(2, round(CLICK_RADIUS_FRACTION * max(self.width, self.height)))

    def flood(self, c: Click) -> np.ndarray | None:
        """The colour region around a click; None when it leaks over most of the image."""
        mask = np.zeros((self.height + 2, self.width + 2), np.uint8)
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | cv2.FLOODFILL_FIXED_RANGE | (255 << 8)
        tolerance = (FLOOD_TOLERANCE,) * 3
        cv2.floodFill(self._smooth, mask, (int(c.x), int(c.y)), 0, tolerance, tolerance, flags)
        region = mask[1:-1, 1:-1] > 0
        return None if region.mean() > 0.5 else region

    def _disk(self, labels: np.ndarray, c: Click, value: int) -> None:
        cv2.circle(labels, (int(c.x), int(c.y)), self._radius, value, -1)

    def segment(self, prompts: Prompts) -> Result:
        positives, negatives = prompts.positives, prompts.negatives
        if prompts.box is None and not positives:
            raise InvalidArgument("start with a box or a positive point: there is nothing to segment yet")
        labels = np.full((self.height, self.width), cv2.GC_BGD, np.uint8)
        if prompts.box is not None:
            b = prompts.box
            labels[int(b.y0) : int(np.ceil(b.y1)), int(b.x0) : int(np.ceil(b.x1))] = cv2.GC_PR_FGD
        for c in positives:
            region = self.flood(c)
            if region is not None:
                labels[region] = cv2.GC_PR_FGD
        if prompts.box is None:
            # Without a box, the unknown band around the flooded regions is probably background.
            near = cv2.dilate((labels == cv2.GC_PR_FGD).astype(np.uint8), _SQUARE3, iterations=self._radius * 3) > 0
            labels[near & (labels == cv2.GC_BGD)] = cv2.GC_PR_BGD
        for c in negatives:
            region = self.flood(c)
            if region is not None and not any(region[int(p.y), int(p.x)] for p in positives):
                labels[region] = cv2.GC_BGD
        for c in negatives:
            self._disk(labels, c, cv2.GC_BGD)
        for c in positives:
            self._disk(labels, c, cv2.GC_FGD)
        mask = self._grabcut(labels, prompts)
        mask = keep_prompted(mask, positives)
        return Result(mask, _consistency(mask, prompts))

    def _grabcut(self, labels: np.ndarray, prompts: Prompts) -> np.ndarray:
        foreground = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        background = (labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD)
        if background.sum() < MIN_SAMPLES:
            raise InvalidArgument(
                "the box covers the whole image, so there is no background to learn from; "
                "draw a tighter box or add a negative point"
            )
        if foreground.sum() < MIN_SAMPLES:
            return foreground  # too small to model: the prompt is the answer
        # Work on the region around the object: everything further away is background anyway.
        ys, xs = np.nonzero(foreground)
        margin = max(8, int(0.25 * max(xs.max() - xs.min(), ys.max() - ys.min())))
        x0, x1 = max(0, xs.min() - margin), min(self.width, xs.max() + margin + 1)
        y0, y1 = max(0, ys.min() - margin), min(self.height, ys.max() + margin + 1)
        crop = np.ascontiguousarray(labels[y0:y1, x0:x1])
        crop_background = (crop == cv2.GC_BGD) | (crop == cv2.GC_PR_BGD)
        if crop_background.sum() < MIN_SAMPLES:  # the object fills the crop: learn background from all of it
            x0, y0, x1, y1 = 0, 0, self.width, self.height
            crop = labels.copy()
        background_model = np.zeros((1, 65), np.float64)
        foreground_model = np.zeros((1, 65), np.float64)
        pixels = np.ascontiguousarray(self.image[y0:y1, x0:x1])
        try:
            # the rect is unused when the mask initialises the models
            cv2.grabCut(
                pixels, crop, (0, 0, 0, 0), background_model, foreground_model, ITERATIONS, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error:  # degenerate colour models (e.g. a flat image): keep the prompt's own region
            return foreground
        mask = np.zeros((self.height, self.width), bool)
        mask[y0:y1, x0:x1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
        return mask


def keep_prompted(mask: np.ndarray, positives: list[Click]) -> np.ndarray:
    count, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    keep = {int(components[int(c.y), int(c.x)]) for c in positives} - {0}
    if not keep:
        sizes = np.bincount(components.ravel(), minlength=count)
        sizes[0] = 0
        keep = {int(np.argmax(sizes))}
    return np.isin(components, list(keep))


def _consistency(mask: np.ndarray, prompts: Prompts) -> float:
    """Share of the prompts the mask agrees with: clicks on the right side, the box mostly filled."""
    checks = [bool(mask[int(c.y), int(c.x)]) == c.positive for c in prompts.clicks]
    if prompts.box is not None:
        b = prompts.box
        inside = mask[int(b.y0) : int(np.ceil(b.y1)), int(b.x0) : int(np.ceil(b.x1))].sum()
        checks.append(mask.sum() > 0 and inside / mask.sum() > 0.9)
    return float(np.mean(checks)) if checks else 0.0

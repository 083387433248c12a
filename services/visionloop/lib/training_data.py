"""What a trainer trains on: an image and its ground-truth objects, in image pixels.

The reference trainer, the synthetic field and the demo share these types; a plug-in builds them
from the hub's annotations (``visionloop.server.trainer.reference.plugin``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Annotation:
    """One ground-truth object: a box (x, y, width, height) or a point (x, y)."""

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

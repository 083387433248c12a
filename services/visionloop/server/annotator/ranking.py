"""Active-learning criteria for the annotation queue (RankQueue and the priority watcher).

Uncertainty criteria score each object the model saw (``lib.acquisition``): detections of
different categories on the same spot (boxes or outlines overlapping at IoU >= 0.5, points within
8 px; all of an image's classifications) form one object; its class distribution is their
confidences plus the mass left over (``1 - sum``, "none of these"), normalised. Per object, with
s1 >= s2 the two largest probabilities:

- least confidence: ``1 - s1``
- margin: ``1 - (s1 - s2)``
- entropy: ``-sum p log p / log K`` (K entries; 1 for a uniform distribution)

The image priority reduces the object scores with max, mean or sum; an image without detections
scores 0 (nothing uncertain to learn from). The diversity criterion instead uses image embeddings:
greedy k-centre over the queue, each image's priority being its distance to the nearest image
already annotated or picked before it, so the queue walks the unexplored parts of image space first.
A label budget spent on the inbox (SelectImages) combines these: ``annotator.selection``.
"""

from __future__ import annotations

import numpy as np

from visionloop.common.v1 import detection_pb2
from visionloop.lib import acquisition
from visionloop.lib.acquisition import distribution, k_centre, object_score, objects

__all__ = ["distribution", "embedding", "image_priority", "k_centre", "object_score", "objects"]


def image_priority(detections: detection_pb2.Detections, ranker: int, reducer: int) -> float:
    return acquisition.uncertainty(detections, ranker, reducer)


def embedding(image: np.ndarray) -> np.ndarray:
    """A small appearance vector: a grey 8x8 thumbnail and an 8-bin-per-channel colour histogram."""
    return acquisition.appearance(image)

"""Overlap of boxes and masks: the one intersection over union every service uses.

Boxes are ``(x, y, width, height)`` in pixels, as the contracts' ``Box`` is; areas are
``width * height`` (no +1), as pycocotools computes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = Sequence[float]  # x, y, width, height


def box_iou(a: Box, b: Box) -> float:
    """IoU of two boxes; two zero-area boxes overlap fully only when they are the same box.
    Plain Python: callers compare a few boxes per frame, where numpy costs more than it saves."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(min(ax + aw, bx + bw) - max(ax, bx), 0.0) * max(min(ay + ah, by + bh) - max(ay, by), 0.0)
    union = aw * ah + bw * bh - inter
    if union <= 0:
        return 1.0 if tuple(a) == tuple(b) else 0.0
    return inter / union


def box_ious(boxes: np.ndarray, others: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """N x M IoU of two arrays of boxes (N x 4 and M x 4), as pycocotools computes it: 0 where
    they do not intersect; against a crowd region (``crowd[m]``) the overlap over the box's own area."""
    d = boxes[:, None, :]
    g = others[None, :, :]
    w = np.clip(np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0]), 0, None)
    h = np.clip(np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1]), 0, None)
    inter = w * h
    union = d[..., 2] * d[..., 3] + g[..., 2] * g[..., 3] - inter
    if crowd is not None and crowd.any():
        union = np.where(crowd[None, :], d[..., 2] * d[..., 3] + 0 * g[..., 2], union)
    return np.divide(inter, union, out=np.zeros_like(inter), where=inter > 0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of one size; two empty masks are the same mask."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0

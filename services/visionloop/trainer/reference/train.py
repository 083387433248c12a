"""A minimal, deterministic CPU training loop for the reference CenterNet.

Images are letterboxed with the detector's own pre-processing (``detector.preprocess.prepare``),
so what the model sees in training is exactly what it sees when served.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from visionloop.common.v1 import model_pb2
from visionloop.detector.preprocess import Frame, prepare
from visionloop.synthetic.world import Annotation, Sample
from visionloop.trainer.reference.model import POINT_SIZE, CenterNet, Target, encode, loss

Progress = Callable[[int, float], None]  # (epoch, 1-based; mean loss over the epoch)


def input_size(resolution: int, width: int, height: int) -> tuple[int, int]:
    """Model input for frames of ``width`` x ``height``: ``resolution`` wide (or high), aspect kept, multiples of 16."""
    scale = resolution / max(width, height)
    return max(16, round(width * scale / 16) * 16), max(16, round(height * scale / 16) * 16)


def _targets(annotations: Sequence[Annotation], names: Sequence[str], sx: float, sy: float) -> list[Target]:
    """Annotations in frame pixels to targets in input pixels; unknown categories are skipped."""
    result = []
    for a in annotations:
        if a.category not in names:
            continue
        cx, cy = a.centre
        w, h = (a.box[2], a.box[3]) if a.box is not None else (POINT_SIZE / sx, POINT_SIZE / sy)
        result.append(Target(names.index(a.category), cx * sx, cy * sy, w * sx, h * sy))
    return result


def _flipped(targets: list[Target], width: int, height: int, rl: bool, ud: bool) -> list[Target]:
    return [
        Target(t.category, width - t.cx if rl else t.cx, height - t.cy if ud else t.cy, t.width, t.height)
        for t in targets
    ]


def _prepared(
    samples: Sequence[Sample], names: Sequence[str], width: int, height: int
) -> tuple[torch.Tensor, list[list[Target]]]:
    spec = model_pb2.ModelInput(width=width, height=height, color_order=model_pb2.COLOR_ORDER_RGB)
    images, targets = [], []
    for sample in samples:
        tensor, transform = prepare(Frame(sample.image, "bgr"), spec, model_pb2.RESCALE_TYPE_PAD)
        images.append(torch.from_numpy(tensor))
        targets.append(_targets(sample.annotations, names, transform.scale_x, transform.scale_y))
    return torch.stack(images), targets


def _batch(
    images: torch.Tensor,
    targets: list[list[Target]],
    indices: list[int],
    flips: np.ndarray,
    classes: int,
) -> tuple[torch.Tensor, ...]:
    """Images and encoded targets for ``indices``, flipped where ``flips`` says (rl, ud per image)."""
    height, width = images.shape[2], images.shape[3]
    batch, heat, size, offset, mask = [], [], [], [], []
    for index, (rl, ud) in zip(indices, flips, strict=True):
        image = images[index]
        dims = [d for d, on in ((2, rl), (1, ud)) if on]
        batch.append(torch.flip(image, dims) if dims else image)
        # Re-encoding (not flipping the maps) keeps offsets exact: a flip moves centres across cells.
        encoded = encode(_flipped(targets[index], width, height, bool(rl), bool(ud)), classes, width, height)
        heat.append(encoded.heatmap)
        size.append(encoded.size)
        offset.append(encoded.offset)
        mask.append(encoded.mask)
    return (torch.stack(batch), *(torch.from_numpy(np.stack(x)) for x in (heat, size, offset, mask)))


def train(
    samples: Sequence[Sample],
    categories: Sequence[str],
    epochs: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    resolution: int = 320,
    flip_rl: bool = True,
    flip_ud: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
    width: int = 24,
) -> CenterNet:
    """Train a CenterNet on ``samples`` for ``categories`` (names, in output order); deterministic per seed.

    The model's input is ``input_size(resolution, ...)`` of the first sample's frame size.
    """
    if not samples:
        raise ValueError("training needs at least one sample")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    names = list(categories)
    frame_h, frame_w = samples[0].image.shape[:2]
    in_w, in_h = input_size(resolution, frame_w, frame_h)
    images, targets = _prepared(samples, names, in_w, in_h)

    model = CenterNet(len(names), width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(samples) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=max(steps, 1), pct_start=0.15)
    model.train()
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(samples)).tolist()
        total, batches = 0.0, 0
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            flips = rng.random((len(indices), 2)) < np.array([0.5 * flip_rl, 0.5 * flip_ud])
            batch, heat, size, offset, mask = _batch(images, targets, indices, flips, len(names))
            value, _ = loss(model(batch), heat, size, offset, mask)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            schedule.step()
            total, batches = total + float(value.detach()), batches + 1
        if progress is not None:
            progress(epoch, total / batches)
    return model.eval()

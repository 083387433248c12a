"""VisionLoop's reference detector: a small single-stage CenterNet in plain PyTorch.

Every object is a peak in its category's heatmap at stride 4, with the box size and the sub-cell
offset read at the peak. Points (stems) are objects with a nominal size, so one model serves box
and point categories and the detector's ``decoders.centernet`` decodes its ONNX export as is.

During training the heads give raw values (heatmap logits, log box size in cells); the export
wraps the model so the ONNX outputs are exactly the decoder's layout: sigmoid scores, size in
input pixels, offset in cells.
"""

from __future__ import annotations

import threading
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from visionloop.lib.model_format.model_json import MODEL_JSON, dumps

STRIDE = 4
POINT_SIZE = 12.0  # pixels: the box a point category is trained to, so NMS keeps nearby points apart
_PRIOR = 0.05  # initial heatmap score: a low prior keeps the focal loss stable in the first steps


def _init_bias(conv: nn.Conv2d, value: float) -> None:
    assert conv.bias is not None, "the heads are built with a bias (Conv2d's default)"
    nn.init.constant_(conv.bias, value)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class CenterNet(nn.Module):
    """A light encoder to stride 16 and a top-down path back to stride 4, then three heads."""

    def __init__(self, classes: int, width: int = 24) -> None:
        super().__init__()
        self.classes = classes
        w = width
        self.s2 = _block(3, w // 2, 2)
        self.s4 = nn.Sequential(_block(w // 2, w, 2), _block(w, w))
        self.s8 = nn.Sequential(_block(w, 2 * w, 2), _block(2 * w, 2 * w))
        self.s16 = nn.Sequential(_block(2 * w, 2 * w, 2), _block(2 * w, 2 * w))
        self.lateral8 = nn.Conv2d(2 * w, 2 * w, 1)
        self.reduce8 = nn.Conv2d(2 * w, w, 1)
        self.lateral4 = nn.Conv2d(w, w, 1)
        self.neck = _block(w, w)
        self.heatmap = nn.Conv2d(w, classes, 1)
        self.size = nn.Conv2d(w, 2, 1)
        self.offset = nn.Conv2d(w, 2, 1)
        _init_bias(self.heatmap, float(np.log(_PRIOR / (1 - _PRIOR))))
        _init_bias(self.size, float(np.log(24.0 / STRIDE)))  # a typical weed, in cells
        _init_bias(self.offset, 0.5)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw heads for [N, 3, H, W] RGB in [0, 1] (H, W multiples of 16): logits, log size in cells, offset."""
        x4 = self.s4(self.s2(images - 0.5))
        x8 = self.s8(x4)
        x16 = self.s16(x8)
        up8 = self.lateral8(x8) + F.interpolate(x16, scale_factor=2.0, mode="nearest")
        up4 = self.lateral4(x4) + F.interpolate(self.reduce8(up8), scale_factor=2.0, mode="nearest")
        features = self.neck(up4)
        return self.heatmap(features), self.size(features), self.offset(features)


class Exported(nn.Module):
    """The decoder's layout: sigmoid heatmap, size in input pixels, offset in cells."""

    def __init__(self, model: CenterNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, log_size, offset = self.model(images)
        return torch.sigmoid(logits), torch.exp(log_size.clamp(max=8.0)) * STRIDE, offset


@dataclass(frozen=True)
class Target:
    """One object in the model's input pixels: category index and box centre and size."""

    category: int
    cx: float
    cy: float
    width: float
    height: float


@dataclass(frozen=True)
class Targets:
    heatmap: np.ndarray  # [C, H/s, W/s] gaussians peaking at exactly 1 at each centre cell
    size: np.ndarray  # [2, H/s, W/s] box w, h in input pixels at centre cells
    offset: np.ndarray  # [2, H/s, W/s] sub-cell x, y at centre cells
    mask: np.ndarray  # [H/s, W/s] 1 at centre cells


def _sigma(extent: float) -> float:
    """Gaussian spread in cells: wider for bigger objects, never narrower than a cell's neighbours."""
    return max(0.7, extent / STRIDE / 6.0)


def encode(targets: Sequence[Target], classes: int, width: int, height: int) -> Targets:
    """Training targets for one image of ``width`` x ``height`` input pixels."""
    cols, rows = width // STRIDE, height // STRIDE
    heatmap = np.zeros((classes, rows, cols), np.float32)
    size = np.zeros((2, rows, cols), np.float32)
    offset = np.zeros((2, rows, cols), np.float32)
    mask = np.zeros((rows, cols), np.float32)
    ys, xs = np.arange(rows, dtype=np.float32)[:, None], np.arange(cols, dtype=np.float32)[None, :]
    for t in targets:
        gx, gy = t.cx / STRIDE, t.cy / STRIDE
        col, row = int(np.floor(gx)), int(np.floor(gy))
        if not (0 <= col < cols and 0 <= row < rows):
            continue  # the centre is outside the input: nothing to peak at
        # Centred on the integer cell, so the peak is exactly 1 there and the offset carries the rest.
        sx, sy = _sigma(t.width), _sigma(t.height)
        gaussian = np.exp(-((xs - col) ** 2) / (2 * sx * sx) - ((ys - row) ** 2) / (2 * sy * sy))
        np.maximum(heatmap[t.category], gaussian, out=heatmap[t.category])
        size[:, row, col] = (t.width, t.height)
        offset[:, row, col] = (gx - col, gy - row)
        mask[row, col] = 1.0
    return Targets(heatmap, size, offset, mask)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of objects."""
    positive = target.eq(1.0).float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos = positive * (1 - p).pow(alpha) * log_p
    neg = (1 - positive) * (1 - target).pow(beta) * p.pow(alpha) * log_not_p
    return -(pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)


def loss(
    outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    heatmap: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    size_weight: float = 1.0,
    offset_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Focal loss on the heatmap plus L1 on log size and offset at centre cells; the parts for logging."""
    logits, log_size, raw_offset = outputs
    heat = focal_loss(logits, heatmap)
    where = mask.unsqueeze(1)  # [N, 1, H, W]
    count = mask.sum().clamp(min=1.0)
    wanted_log_size = torch.log(size.clamp(min=1.0) / STRIDE)  # log: a 4 px error matters more on small objects
    size_l1 = (torch.abs(log_size - wanted_log_size) * where).sum() / count
    offset_l1 = (torch.abs(raw_offset - offset) * where).sum() / count
    total = heat + size_weight * size_l1 + offset_weight * offset_l1
    return total, {
        "heatmap": float(heat.detach()),
        "size": float(size_l1.detach()),
        "offset": float(offset_l1.detach()),
    }


# torch.onnx.export keeps its state in module globals: two exports at once in one process break each
# other ("GLOBALS.in_onnx_export must be ..."), as when the trainer and the converter run in one process
# (embedded mode, the demo). Reentrant: the converter holds it around a whole export.
ONNX_EXPORT_LOCK = threading.RLock()


def export_onnx(model: CenterNet, path: Path, width: int, height: int) -> Path:
    """ONNX (opset 17): input ``images`` [N,3,H,W] RGB in [0,1]; outputs ``heatmap``, ``size``, ``offset``."""
    if width % 16 or height % 16:
        raise ValueError(f"width and height must be multiples of 16, got {width}x{height}")
    wrapper = Exported(model).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter, on purpose: the dynamo one needs onnxscript, which is not a dependency.
    with ONNX_EXPORT_LOCK, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (torch.zeros(1, 3, height, width),),
            str(path),
            input_names=["images"],
            output_names=["heatmap", "size", "offset"],
            dynamic_axes={name: {0: "N"} for name in ("images", "heatmap", "size", "offset")},
            opset_version=17,
            dynamo=False,
        )
    return path


def model_json(
    categories: Sequence[tuple[str, str]],
    width: int,
    height: int,
    category_ids: Sequence[str] | None = None,
    score_threshold: float = 0.3,
) -> dict[str, object]:
    """The model.json the detector reads: (name, "box" | "point") categories in output order."""
    ids = list(category_ids) if category_ids else [f"category-{name}" for name, _ in categories]
    return {
        "format": "onnx",
        "resolution": max(width, height),
        "categories": [{"id": i, "name": name, "type": kind} for i, (name, kind) in zip(ids, categories, strict=True)],
        "input": {
            "tensor_name": "images",
            "width": width,
            "height": height,
            "color_order": "COLOR_ORDER_RGB",
            "rescale_type": "RESCALE_TYPE_PAD",
        },
        "output": {
            "decoder": "OUTPUT_DECODER_VISIONLOOP_CENTERNET",
            "tensor_names": ["heatmap", "size", "offset"],
            "parameters": {"stride": str(STRIDE)},
        },
        "detection_defaults": {"score_threshold": score_threshold, "iou_threshold": 0.45, "max_objects": 100},
        "variant": "centernet_small",
    }


def model_zip(model: CenterNet, path: Path, categories: Sequence[tuple[str, str]], width: int, height: int) -> Path:
    """A model zip (model.onnx + model.json) as the hub stores it, for the ``onnx`` format."""
    onnx_path = export_onnx(model, path.with_suffix(".onnx"), width, height)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(onnx_path, "model.onnx")
        archive.writestr(MODEL_JSON, dumps(model_json(categories, width, height)))
    onnx_path.unlink()
    return path

"""The reference detector's model files per format.

``pytorch``: ``model.json`` plus ``model.pt``, a plain ``torch.save`` of the architecture
parameters and the state dict (no pickled classes, so it loads with ``weights_only=True``).
``onnx``: ``model.json`` plus ``model.onnx`` in the layout the detector's CenterNet decoder reads.
The converter turns the first into the second with :func:`pytorch_to_onnx`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from visionloop.lib.centernet.model import CenterNet, export_onnx
from visionloop.lib.model_format.model_json import read_model_json, write_model_json

VARIANT = "centernet_small"
WEIGHTS = "model.pt"
ONNX = "model.onnx"


def write_pytorch(model: CenterNet, folder: Path, model_json: Mapping[str, Any], width: int) -> Path:
    """``folder`` with ``model.json`` (format ``pytorch``) and ``model.pt``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "variant": VARIANT,
        "classes": model.classes,
        "width": width,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(state, folder / WEIGHTS)
    write_model_json(folder, {**model_json, "format": "pytorch"})
    return folder


def load_pytorch(folder: Path) -> tuple[CenterNet, dict[str, Any]]:
    """The model of a ``pytorch`` artifact folder (eval mode) and its model.json."""
    doc = read_model_json(folder)
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    if state.get("variant") != VARIANT:
        raise ValueError(f"{folder / WEIGHTS} holds variant {state.get('variant')!r}, not {VARIANT!r}")
    model = CenterNet(int(state["classes"]), int(state["width"]))
    model.load_state_dict(state["state_dict"])
    return model.eval(), doc


def pytorch_to_onnx(source: Path, target: Path) -> Path:
    """Export the ``pytorch`` artifact in ``source`` as an ``onnx`` artifact folder ``target``."""
    model, doc = load_pytorch(source)
    spec = doc["input"]
    target.mkdir(parents=True, exist_ok=True)
    export_onnx(model, target / ONNX, int(spec["width"]), int(spec["height"]))
    write_model_json(target, {**doc, "format": "onnx"})
    return target

"""PyTorch → ONNX, one exporter per model variant (model.json ``variant``).

A variant names an architecture and how its ``pytorch`` artifact is laid out; the trainer that
produces it also knows how to export it. Each entry here exports the artifact folder to an
``onnx`` artifact folder and can run the source in PyTorch, so the parity check compares the
export with what was trained. Add a variant by adding an entry to ``EXPORTERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionloop.server.converter.errors import ConversionFailed

Runner = Callable[[np.ndarray], list[np.ndarray]]  # [N,3,H,W] float32 -> outputs in model.json order


@dataclass(frozen=True)
class Exporter:
    export: Callable[[Path, Path], Path]  # (pytorch folder, onnx folder) -> onnx folder with model.json
    load: Callable[[Path], Runner]  # the source model, run in PyTorch


def _centernet_export(source: Path, target: Path) -> Path:
    from visionloop.lib.centernet.artifacts import pytorch_to_onnx

    return pytorch_to_onnx(source, target)


def _centernet_load(source: Path) -> Runner:
    import torch

    from visionloop.lib.centernet.artifacts import load_pytorch
    from visionloop.lib.centernet.model import Exported

    model, _ = load_pytorch(source)
    wrapper = Exported(model).eval()  # the export's outputs: heatmap, size, offset

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in wrapper(torch.from_numpy(batch))]

    return run


EXPORTERS: dict[str, Exporter] = {
    "centernet_small": Exporter(_centernet_export, _centernet_load),
}


def exporter_for(variant: str) -> Exporter:
    """The exporter of ``variant``; ConversionFailed (permanent) when there is none."""
    exporter = EXPORTERS.get(variant)
    if exporter is None:
        known = ", ".join(sorted(EXPORTERS))
        shown = repr(variant) if variant else "(none: model.json has no variant)"
        raise ConversionFailed(
            f"no PyTorch exporter for model variant {shown}; this converter exports {known}", permanent=True
        )
    return exporter


def load_source(variant: str, source: Path) -> Runner:
    """The PyTorch source model as a runner; ConversionFailed when it does not load."""
    exporter = exporter_for(variant)
    try:
        return exporter.load(source)
    except ImportError as error:
        raise ConversionFailed(f"this converter cannot run PyTorch ({error}); install the trainer extra") from None
    except Exception as error:  # torch.load and load_state_dict raise many kinds for broken files
        raise ConversionFailed(f"the PyTorch model does not load: {type(error).__name__}: {error}") from None


def export(variant: str, source: Path, target: Path) -> Path:
    """Export the ``pytorch`` folder ``source`` to the ``onnx`` folder ``target``."""
    exporter = exporter_for(variant)
    try:
        from visionloop.lib.centernet.model import ONNX_EXPORT_LOCK  # PyTorch: the trainer extra

        # One torch.onnx.export at a time in this process (its state is global), whatever the variant.
        with ONNX_EXPORT_LOCK:
            return exporter.export(source, target)
    except ImportError as error:
        raise ConversionFailed(f"this converter cannot run PyTorch ({error}); install the trainer extra") from None
    except Exception as error:
        raise ConversionFailed(f"the PyTorch export failed: {type(error).__name__}: {error}") from None

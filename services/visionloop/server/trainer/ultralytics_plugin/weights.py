"""The ``pytorch`` model files of an Ultralytics training, and the checkpoints Ultralytics starts from.

A VisionLoop ``pytorch`` artifact of this trainer is ``model.json`` plus ``model.pt``: a plain
``torch.save`` of the task, the architecture (the model's yaml as a dict), the class names and the
state dict, with no pickled classes, so it loads with ``weights_only=True`` like the reference
trainer's. (An Ultralytics ``.pt`` is a pickle of the model's classes: loading one from the hub,
which takes uploads, would run whatever it holds.) To train on from one, or to run it, the model is
rebuilt from the architecture and its weights, and written as an Ultralytics checkpoint in the
training folder, which ``YOLO(path)`` opens.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from visionloop.lib.model_format.model_json import MODEL_JSON
from visionloop.runtime.files import write_atomically

WEIGHTS = "model.pt"
KIND = "visionloop-ultralytics"  # what model.pt holds, checked on load
VERSION = 1


class NotOurs(ValueError):
    """A model file this trainer did not write (another variant's, or damaged); the message says which."""


def write_pytorch(checkpoint: Path, folder: Path, doc: dict[str, Any]) -> None:
    """``folder``/model.pt from an Ultralytics checkpoint this trainer wrote, and ``doc`` as model.json."""
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    state = {
        "kind": KIND,
        "version": VERSION,
        "task": str(model.task),
        "yaml": _plain(model.yaml),
        "names": [str(model.names[k]) for k in range(len(model.names))],
        # Half precision, as Ultralytics keeps its own checkpoints (the EMA it trains is saved in half).
        "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()},
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / WEIGHTS)
    (folder / MODEL_JSON).write_text(json.dumps({**doc, "format": "pytorch"}, indent=2))


def read_pytorch(folder: Path) -> dict[str, Any]:
    """The state in ``folder``/model.pt; NotOurs when the file is no model of this trainer."""
    path = folder / WEIGHTS
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # pickled classes (an Ultralytics .pt), or no pickle at all
        raise NotOurs(f"{path.name} is not a model file of the Ultralytics trainer (no weights-only file)") from None
    except (OSError, RuntimeError, ValueError, EOFError) as error:
        raise NotOurs(f"{path.name} is not a model file of the Ultralytics trainer: {error}") from None
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise NotOurs(f"{path.name} is not a model file of the Ultralytics trainer")
    return state


def ultralytics_checkpoint(folder: Path, target: Path) -> Path:
    """The model in the ``pytorch`` artifact ``folder`` as an Ultralytics checkpoint at ``target``."""
    if target.is_file():
        return target
    from ultralytics.nn.tasks import DetectionModel, SegmentationModel

    state = read_pytorch(folder)
    builders = {"detect": DetectionModel, "segment": SegmentationModel}
    if state.get("task") not in builders:
        raise NotOurs(f"the model's task {state.get('task')!r} is not one this trainer builds ({', '.join(builders)})")
    names = list(state["names"])
    model = builders[state["task"]](cfg=dict(state["yaml"]), nc=len(names), verbose=False)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["state_dict"].items()})
    model.names = dict(enumerate(names))
    model.task = state["task"]
    buffer = _serialise({"model": model.half(), "train_args": {"task": state["task"]}, "epoch": -1})
    write_atomically(target, buffer)
    return target


def _serialise(checkpoint: dict[str, Any]) -> bytes:
    import io

    out = io.BytesIO()
    torch.save(checkpoint, out)
    return out.getvalue()


def _plain(value: Any) -> Any:
    """``value`` with containers as dicts and lists of plain scalars, which ``weights_only`` loads."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)

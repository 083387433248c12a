"""Upload checks of a model zip's ONNX graph against its model.json (blocking; run in a worker thread).

A zip whose model.json names an output decoder is one a detector will serve: when it holds an ONNX
file at its top level (the one a detector loads: ``model.onnx``, else the first ``*.onnx``), the
graph's inputs, outputs and metadata are read (``visionloop.lib.model_format.onnx_graph``: forward through the
zip entry, weights skipped, so memory stays small whatever the file's size) and the model.json
must fit them: tensor names, ranks, element types, class count, batch and image size. A mismatch
is refused with INVALID_ARGUMENT naming each problem, instead of loading as "serving" on every
detector and failing each request there.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from visionloop.lib.model_format import onnx_graph
from visionloop.lib.model_format.model_json import model_info_from_json
from visionloop.runtime.errors import InvalidArgument


def _onnx_entry(names: list[str]) -> str | None:
    top = sorted(name for name in names if "/" not in name and name.lower().endswith(".onnx"))
    return "model.onnx" if "model.onnx" in top else (top[0] if top else None)


def check_graph(path: Path, doc: dict[str, Any]) -> None:
    """INVALID_ARGUMENT when the zip's model.json (``doc``) does not fit its ONNX graph."""
    output = doc.get("output")
    if not isinstance(output, dict) or not output.get("decoder"):
        return  # not a model a detector serves as it is (a PyTorch checkpoint, a plain file store)
    info = model_info_from_json(doc)
    try:
        with zipfile.ZipFile(path) as archive:
            entry = _onnx_entry(archive.namelist())
            if entry is None:
                return
            with archive.open(entry) as stream:
                signature = onnx_graph.read_signature_from(stream)  # type: ignore[arg-type]
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise InvalidArgument(f"the zip cannot be read: {error}") from None
    except InvalidArgument as error:
        raise InvalidArgument(f"{entry}: {error.message}") from None
    problems = onnx_graph.problems(info, signature)
    if problems:
        raise InvalidArgument(f"model.json does not fit {entry}: " + "; ".join(problems))

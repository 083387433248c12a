"""Model zips in and out of the converter.

Zips come from the hub but were uploaded by any node, so they are untrusted input: entries that
escape the folder (``..``, absolute paths), links, encrypted or exotic entries, zip bombs and
zips without ``model.json`` are refused before anything is written, with the reason.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visionloop.common.v1 import model_pb2
from visionloop.lib.archives import UnsafeArchive, check_entries, safe_extract
from visionloop.lib.model_format.model_json import (
    MAX_MODEL_JSON_BYTES,
    MODEL_JSON,
    model_info_from_json,
    parse_model_json,
)
from visionloop.runtime.errors import InvalidArgument
from visionloop.server.converter.errors import ConversionFailed


@dataclass(frozen=True)
class ModelFolder:
    """An unpacked model: its folder, model.json as written and as ModelInfo."""

    path: Path
    doc: dict[str, Any]
    info: model_pb2.ModelInfo


def read_folder(path: Path) -> ModelFolder:
    """The model in ``path``; ConversionFailed (permanent) when its model.json is missing or invalid."""
    manifest = path / MODEL_JSON
    if not manifest.is_file():
        raise ConversionFailed(f"the model has no {MODEL_JSON} at its top level", permanent=True)
    if manifest.stat().st_size > MAX_MODEL_JSON_BYTES:
        raise ConversionFailed(f"{MODEL_JSON} is larger than 1 MiB", permanent=True)
    try:
        doc = parse_model_json(manifest.read_bytes())
        info = model_info_from_json(doc)
    except InvalidArgument as error:
        raise ConversionFailed(error.message, permanent=True) from None
    return ModelFolder(path, doc, info)


def unpack(archive: Path, destination: Path, max_bytes: int) -> ModelFolder:
    """Check the untrusted zip ``archive``, extract it into ``destination`` and read its model.json."""
    try:
        if not zipfile.is_zipfile(archive):
            raise ConversionFailed("the model is not a zip file", permanent=True)
        with zipfile.ZipFile(archive) as opened:
            names = {info.filename for info in check_entries(opened, max_bytes)}
        if MODEL_JSON not in names:
            raise ConversionFailed(
                f"the model zip has no {MODEL_JSON} at its top level; every model zip needs one", permanent=True
            )
        safe_extract(archive, destination, max_bytes)
    except UnsafeArchive as error:
        raise ConversionFailed(f"unsafe model zip: {error}", permanent=True) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise ConversionFailed(f"the model zip cannot be read: {error}", permanent=True) from None
    return read_folder(destination)

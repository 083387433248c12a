"""model.json, the file inside every model zip: parsing it into ``ModelInfo`` with precise errors,
writing it, and packing a model folder into the zip the hub stores.

The hub validates it on upload; detectors, trainers and converters read it to know a model's
input, output layout and categories.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from visionloop.common.v1 import category_pb2, model_pb2
from visionloop.runtime import validation
from visionloop.runtime.errors import InvalidArgument

HUB_FIELDS = ("host", "organization", "project", "version", "id", "format")  # filled in by the hub
# Set by the registry on reads (the promotion gate's decision included): never taken from an upload.
REGISTRY_FIELDS = ("formats", "sha256", "size_bytes", "sizeBytes", "create_time", "createTime", "promotion")
_CATEGORY_TYPES = {
    "box": category_pb2.CATEGORY_TYPE_BOX,
    "point": category_pb2.CATEGORY_TYPE_POINT,
    "segmentation": category_pb2.CATEGORY_TYPE_SEGMENTATION,
    "classification": category_pb2.CATEGORY_TYPE_CLASSIFICATION,
}
_COLUMN_LIMITS = {"base_model_version": 32, "training_id": 36, "variant": 64}


def _category(entry: Any, index: int) -> dict[str, Any]:
    """A model.json category with its type ("box", ...) turned into the CategoryType value."""
    where = f"model.json categories[{index}]"
    if not isinstance(entry, dict):
        raise InvalidArgument(f'{where} must be an object like {{"id": "...", "name": "weed", "type": "box"}}')
    if not isinstance(entry.get("name"), str) or not entry["name"]:
        raise InvalidArgument(f"{where}.name must be a non-empty string")
    if not isinstance(entry.get("id", ""), str):
        raise InvalidArgument(f"{where}.id must be a string")
    kind = entry.get("type", "")
    if isinstance(kind, bool) or not isinstance(kind, str | int):
        raise InvalidArgument(f"{where}.type must be a string such as 'box'")
    if isinstance(kind, str):
        key = kind.lower().removeprefix("category_type_")
        if key and key not in _CATEGORY_TYPES:
            raise InvalidArgument(f"{where}.type {kind!r} is unknown; use one of {', '.join(_CATEGORY_TYPES)}")
        kind = _CATEGORY_TYPES.get(key, category_pb2.CATEGORY_TYPE_UNSPECIFIED)
    elif kind not in category_pb2.CategoryType.values():
        raise InvalidArgument(f"{where}.type {kind} is not a category type")
    return {**entry, "type": kind}


def model_info_from_json(doc: dict[str, Any]) -> model_pb2.ModelInfo:
    """ModelInfo from a model.json object; INVALID_ARGUMENT naming the offending field."""
    data = {key: value for key, value in doc.items() if key not in REGISTRY_FIELDS}
    categories = data.get("categories")
    if categories is not None:
        if not isinstance(categories, list):
            raise InvalidArgument("model.json categories must be a list of {id, name, type} objects")
        data["categories"] = [_category(entry, i) for i, entry in enumerate(categories)]
    resolution = data.get("resolution")
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 0):
        raise InvalidArgument(f"model.json resolution must be a non-negative integer (pixels), got {resolution!r}")
    info = model_pb2.ModelInfo()
    try:
        json_format.ParseDict(data, info, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise InvalidArgument(f"model.json does not match ModelInfo: {error}") from None
    for field, limit in _COLUMN_LIMITS.items():
        if len(getattr(info, field)) > limit:
            raise InvalidArgument(f"model.json {field} is longer than {limit} characters")
    # The hub stores it and lists it back: the contract's limits, as for a request (10,000 categories, ...).
    found = validation.problem(info)
    if found is not None:
        raise InvalidArgument(f"model.json {found}")
    return info


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_model_json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidArgument(f"model.json is not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"model.json must be a JSON object, got {type(doc).__name__}")
    # Validate what nodes rely on; the fields the hub owns are overwritten anyway, whatever their type.
    model_info_from_json({key: value for key, value in doc.items() if key not in HUB_FIELDS})
    return doc


MODEL_JSON = "model.json"
MAX_MODEL_JSON_BYTES = 1024**2  # what nodes and the hub read of a model.json at most
_TYPE_NAMES = {value: key for key, value in _CATEGORY_TYPES.items()}


def info_to_json(info: model_pb2.ModelInfo) -> dict[str, Any]:
    """A model.json object for ``info``: proto field names, enums by name, category types as "box"."""
    doc = json_format.MessageToDict(info, preserving_proto_field_name=True)
    for category, message in zip(doc.get("categories", []), info.categories, strict=True):
        category["type"] = _TYPE_NAMES.get(message.type, "")
    return doc


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def write_model_json(folder: Path, doc: dict[str, Any]) -> None:
    """The one place a model folder's model.json is written (zips get ``dumps`` of it)."""
    (folder / MODEL_JSON).write_text(dumps(doc))


def read_model_json(folder: Path) -> dict[str, Any]:
    """A model folder's model.json as written (not checked: ``parse_model_json`` checks)."""
    doc: dict[str, Any] = json.loads((folder / MODEL_JSON).read_text())
    return doc


def pack(folder: Path, archive: Path) -> Path:
    """Zip every file under ``folder`` (model.json first: the hub rewrites it in place)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(folder).as_posix() != MODEL_JSON)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for file in files:
            out.write(file, file.relative_to(folder).as_posix())
    return archive

"""Dataset archives: COCO detection JSON and YOLO txt, read from and written to zip files.

Everything here blocks (zip, Pillow, object store, SQL on a given session); the hub runs it in
worker threads. An import goes in steps so that a bad archive changes nothing:
``Archive.open`` checks the zip as untrusted input, ``read_dataset`` parses the labels,
``prepare`` decodes every image and checks every box against it, ``ensure_categories`` creates
the missing categories, and only then ``put_blobs`` + ``record_batch`` store images and
annotations, ``BATCH_IMAGES`` per transaction (one huge transaction would hold SQLite's write
lock for minutes). A batch that fails leaves the earlier ones; importing the archive again
completes it, because nothing is added twice.

Layouts read: COCO takes the first ``*.json`` at the top, else under ``annotations/``, and finds
each ``file_name`` beside it, in ``images/``, at the top, or by a unique base name. YOLO takes
``data.yaml`` (or ``classes.txt`` / ``obj.names``) and, per image, ``labels/…/<stem>.txt``
mirroring ``images/…`` or the ``.txt`` beside it; an image without one has no objects. A zip of
one folder is read from inside that folder.

Choices:

- Categories missing from the project are created as box categories. A label whose category
  exists as a segmentation category becomes polygons: one per COCO ``segmentation`` outline, or
  the rectangle of its bbox when it has none (RLE masks are not read). Point and classification
  categories of the same name are refused.
- New images are COMPLETE (an imported dataset is labelled) and come from ``import:<format>``.
  Images already in the project (same bytes) keep their state, get the tags, and receive only
  annotations they do not have yet (same category and shape).
- Export holds the COMPLETE images only, as the contract says: images still in the workflow
  would hand out partial labels as ground truth. COCO carries box and segmentation annotations,
  YOLO box annotations (clipped to the image, as YOLO readers drop out-of-range boxes); other
  kinds are left out.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
import stat
import threading
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from visionloop.common.v1 import category_pb2, geometry_pb2, image_pb2
from visionloop.loop.db import schema
from visionloop.loop.hub import EventBus, get_project, utcnow
from visionloop.loop.images import decode_image, image_key
from visionloop.loop.labels import check_box, check_polygon
from visionloop.loop.projects import DEFAULT_COLORS
from visionloop.loop.storage import BlobNotFound, ObjectStore
from visionloop.loop.transfer import hash_file
from visionloop.loop.v1 import annotation_service_pb2 as pb
from visionloop.loop.v1 import event_service_pb2, project_service_pb2
from visionloop.runtime.archives import zip_entry_problem
from visionloop.runtime.errors import DataLoss, InvalidArgument, ServiceError
from visionloop.runtime.threads import named_executor

MIB = 1024**2
GIB = 1024**3
MAX_DATASET_BYTES = 64 * GIB
MAX_UNCOMPRESSED_BYTES = 256 * GIB
MAX_ENTRIES = 500_000
MAX_JSON_BYTES = 512 * MIB
MAX_TEXT_BYTES = 16 * MIB  # one YOLO label file or class list
MAX_WARNINGS = 100
BATCH_IMAGES = 256
IO_THREADS = 8  # blob reads and writes overlap; S3 round trips dominate otherwise

FORMATS = {pb.DATASET_FORMAT_COCO: "coco", pb.DATASET_FORMAT_YOLO: "yolo"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}
BOX = category_pb2.CATEGORY_TYPE_BOX
SEGMENTATION = category_pb2.CATEGORY_TYPE_SEGMENTATION
_TYPE_NAMES = {
    category_pb2.CATEGORY_TYPE_POINT: "point",
    category_pb2.CATEGORY_TYPE_CLASSIFICATION: "classification",
}


def format_name(value: int) -> str:
    """The format's short name, "coco" or "yolo"; INVALID_ARGUMENT for anything else."""
    if value not in FORMATS:
        raise InvalidArgument("format must be DATASET_FORMAT_COCO or DATASET_FORMAT_YOLO")
    return FORMATS[value]


# --- the archive ------------------------------------------------------------------------------


def _normalise(name: str) -> str:
    return "/".join(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))


def _is_junk(name: str) -> bool:
    """Finder and Explorer leftovers that are no part of a dataset."""
    base = posixpath.basename(name)
    return name.startswith("__MACOSX/") or base.startswith("._") or base in {".DS_Store", "Thumbs.db"}


def _strip_common_folder(files: dict[str, zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Zipping a folder puts everything under its name; read the dataset as if it had not."""
    while files and all("/" in name for name in files):
        tops = {name.split("/", 1)[0] for name in files}
        if len(tops) != 1:
            break
        files = {name.split("/", 1)[1]: info for name, info in files.items()}
    return files


class Archive:
    """A checked zip: its files by normalised name. Reads never exceed an entry's declared size."""

    def __init__(self, zip_file: zipfile.ZipFile, files: dict[str, zipfile.ZipInfo]) -> None:
        self.zip = zip_file
        self.files = files
        self._lock = threading.Lock()  # ZipFile's own reference counting is not thread-safe

    @classmethod
    def open(cls, path: Path) -> Archive:
        if not zipfile.is_zipfile(path):
            raise InvalidArgument("the upload is not a zip file")
        try:
            zip_file = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
            raise InvalidArgument(f"the zip cannot be read: {error}") from None
        try:
            return cls(zip_file, cls._check(zip_file))
        except BaseException:
            zip_file.close()
            raise

    @staticmethod
    def _check(zip_file: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        entries = zip_file.infolist()
        if len(entries) > MAX_ENTRIES:
            raise InvalidArgument(f"the zip has {len(entries)} entries; at most {MAX_ENTRIES} are accepted")
        files: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in entries:
            if (problem := zip_entry_problem(info)) is not None:
                raise InvalidArgument(f"zip entry {info.filename!r} {problem}")
            name = _normalise(info.filename)
            if info.is_dir() or not name or _is_junk(name):
                continue
            if name in files:
                raise InvalidArgument(f"zip entry {info.filename!r} appears twice")
            files[name] = info
            total += info.file_size
        if total > MAX_UNCOMPRESSED_BYTES:
            raise InvalidArgument(f"the zip expands to {total} bytes; at most {MAX_UNCOMPRESSED_BYTES} are accepted")
        return _strip_common_folder(files)

    def read(self, name: str, limit: int) -> bytes:
        info = self.files[name]
        if info.file_size > limit:
            raise InvalidArgument(f"{name} has {info.file_size} bytes; at most {limit} are accepted")
        try:
            with self._lock:
                return self.zip.read(info)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # e.g. a CRC mismatch
            raise InvalidArgument(f"{name} cannot be read from the zip: {error}") from None

    def text(self, name: str, limit: int = MAX_TEXT_BYTES) -> str:
        try:
            return self.read(name, limit).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{name} is not UTF-8 text") from None

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- parsed datasets --------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """One object: a category name and a box, plus COCO outlines when the archive has them."""

    category: str
    box: tuple[float, float, float, float]  # x, y, width, height in pixels (YOLO: see Member.normalised)
    polygons: tuple[tuple[float, ...], ...] = ()  # flat x, y pairs in pixels


@dataclass(frozen=True)
class Member:
    """An image file of the archive and its labels."""

    path: str
    labels: tuple[Label, ...]
    normalised: bool = False  # YOLO: box is centre x, centre y, width, height as fractions of the image


@dataclass(frozen=True)
class Dataset:
    source: str  # image source and annotation creator, e.g. "import:coco"
    categories: tuple[str, ...]  # in the archive's order
    members: tuple[Member, ...]


def read_dataset(archive: Archive, fmt: int) -> Dataset:
    """Parse the labels of a checked archive; INVALID_ARGUMENT naming the first problem."""
    return _read_coco(archive) if format_name(fmt) == "coco" else _read_yolo(archive)


def _category_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{where} must be a non-empty string")
    if len(value.strip()) > 128:
        raise InvalidArgument(f"{where} {value[:20]!r}... is longer than 128 characters")
    return value.strip()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# COCO


def _coco_json(files: Iterable[str]) -> str:
    names = sorted(files)
    top = [n for n in names if "/" not in n and n.lower().endswith(".json")]
    nested = [n for n in names if n.count("/") == 1 and n.startswith("annotations/") and n.lower().endswith(".json")]
    if not top and not nested:
        raise InvalidArgument("no COCO JSON found: put annotations.json at the top of the zip or under annotations/")
    return (top + nested)[0]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _coco_list(doc: dict[str, Any], key: str, where: str, required: bool = True) -> list[Any]:
    value = doc.get(key, None if required else [])
    if not isinstance(value, list):
        raise InvalidArgument(f"{where} needs a list {key!r}")
    return value


def _coco_id(value: Any, where: str) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgument(f"{where} must be an integer or a string, got {value!r}")
    return value


def _hashable_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _coco_box(value: Any, where: str) -> tuple[float, float, float, float]:
    if not (isinstance(value, list) and len(value) == 4 and all(_number(v) for v in value)):
        raise InvalidArgument(f"{where} must be [x, y, width, height] with 4 finite numbers, got {str(value)[:80]}")
    x, y, width, height = (float(v) for v in value)
    if width < 0 or height < 0:
        raise InvalidArgument(f"{where} has a negative size ({width:g} x {height:g})")
    return x, y, width, height


def _coco_polygons(value: Any) -> tuple[tuple[float, ...], ...]:
    """Polygon outlines of a ``segmentation``; RLE masks and malformed outlines yield none."""
    if not isinstance(value, list):
        return ()
    if value and all(_number(v) for v in value):  # some writers flatten a single outline
        value = [value]
    return tuple(
        tuple(float(v) for v in outline)
        for outline in value
        if isinstance(outline, list) and len(outline) >= 6 and len(outline) % 2 == 0 and all(map(_number, outline))
    )


def _resolve(files: dict[str, Any], basenames: dict[str, list[str]], json_dir: str, file_name: str) -> str | None:
    """Where a COCO ``file_name`` lies: beside the JSON, in an images folder, or a unique base name."""
    clean = _normalise(file_name)
    candidates = [
        posixpath.join(json_dir, clean),
        posixpath.join(json_dir, "images", clean),
        posixpath.join(posixpath.dirname(json_dir), "images", clean),
        clean,
    ]
    for candidate in candidates:
        if candidate in files:
            return candidate
    matches = basenames.get(posixpath.basename(clean), [])
    return matches[0] if len(matches) == 1 else None


def _read_coco(archive: Archive) -> Dataset:
    name = _coco_json(archive.files)
    try:
        doc = json.loads(archive.read(name, MAX_JSON_BYTES), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidArgument(f"{name} is not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{name} must be a COCO object with images, categories and annotations")

    categories: dict[int | str, str] = {}
    for i, entry in enumerate(_coco_list(doc, "categories", name)):
        where = f"{name} categories[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where} must be an object with id and name")
        categories[_coco_id(entry.get("id"), f"{where}.id")] = _category_name(entry.get("name"), f"{where}.name")

    basenames: dict[str, list[str]] = {}
    for path in archive.files:
        basenames.setdefault(posixpath.basename(path), []).append(path)
    paths: dict[int | str, str] = {}
    for i, entry in enumerate(_coco_list(doc, "images", name)):
        where = f"{name} images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            raise InvalidArgument(f"{where} must be an object with id and file_name")
        image_id = _coco_id(entry.get("id"), f"{where}.id")
        if image_id in paths:
            raise InvalidArgument(f"{where}.id {image_id!r} appears twice")
        path = _resolve(archive.files, basenames, posixpath.dirname(name), entry["file_name"])
        if path is None:
            raise InvalidArgument(f"{where}.file_name {entry['file_name']!r} is not in the zip")
        paths[image_id] = path

    labels: dict[int | str, list[Label]] = {image_id: [] for image_id in paths}
    for i, entry in enumerate(_coco_list(doc, "annotations", name, required=False)):
        where = f"{name} annotations[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where} must be an object")
        image_id, category_id = entry.get("image_id"), entry.get("category_id")
        if not _hashable_id(image_id) or image_id not in labels:
            raise InvalidArgument(f"{where}.image_id {image_id!r} is not in images")
        if not _hashable_id(category_id) or category_id not in categories:
            raise InvalidArgument(f"{where}.category_id {category_id!r} is not in categories")
        box = _coco_box(entry.get("bbox"), f"{where}.bbox")
        labels[image_id].append(Label(categories[category_id], box, _coco_polygons(entry.get("segmentation"))))

    members = tuple(Member(paths[image_id], tuple(found)) for image_id, found in labels.items())
    return Dataset("import:coco", tuple(dict.fromkeys(categories.values())), members)


# YOLO


def _unquote(value: str, where: str) -> str:
    """A YAML scalar: "json-like", 'single' (with '' for '), or plain up to a comment."""
    value = value.strip()
    if value.startswith('"'):
        match = re.match(r'"(?:[^"\\]|\\.)*"', value)
        if match is None:
            raise InvalidArgument(f"{where}: unterminated string {value[:40]!r}")
        try:
            return str(json.loads(match[0]))
        except ValueError:
            raise InvalidArgument(f"{where}: cannot read string {match[0][:40]!r}") from None
    if value.startswith("'"):
        match = re.match(r"'((?:[^']|'')*)'", value)
        if match is None:
            raise InvalidArgument(f"{where}: unterminated string {value[:40]!r}")
        return match[1].replace("''", "'")
    return re.split(r"\s#", value, maxsplit=1)[0].strip()


def _flow_items(text: str, where: str) -> list[str]:
    """Items of ``[a, 'b', "c"]`` or ``{0: a, 1: b}`` (values only)."""
    text = text.strip()
    if text[:1] not in "[{" or text[-1:] not in "]}":
        raise InvalidArgument(f"{where}: names must be a list, e.g. names: [weed, stem]")
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|[^,]+', text[1:-1])
    items = []
    for token in tokens:
        if not token.strip():
            continue
        if text[0] == "{":
            token = token.split(":", 1)[1] if ":" in token else token
        items.append(_unquote(token, where))
    return items


def yaml_names(text: str, where: str) -> list[str]:
    """Class names from an Ultralytics data.yaml (``names`` as a list, block list or index map)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^names\s*:(.*)$", line)
        if match is None:
            continue
        rest = match[1].strip()
        if rest[:1] in ("[", "{"):
            return _flow_items(rest[: max(rest.rfind("]"), rest.rfind("}")) + 1], where)
        if rest and not rest.startswith("#"):
            raise InvalidArgument(f"{where}: names must be a list, e.g. names: [weed, stem]")
        listed: list[str] = []
        indexed: dict[int, str] = {}
        for raw in lines[i + 1 :]:
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            if not raw[0].isspace() and not raw.startswith("-"):
                break  # the next top-level key
            item = raw.strip()
            if item.startswith("-"):
                listed.append(_unquote(item[1:], where))
            elif (pair := re.match(r"^(\d+)\s*:(.*)$", item)) is not None:
                indexed[int(pair[1])] = _unquote(pair[2], where)
            else:
                raise InvalidArgument(f"{where}: cannot read names entry {item[:40]!r}")
        if indexed:
            if sorted(indexed) != list(range(len(indexed))):
                raise InvalidArgument(f"{where}: names indices must be 0..{len(indexed) - 1}")
            return [indexed[k] for k in range(len(indexed))]
        return listed
    raise InvalidArgument(f"{where} has no names: list of classes")


def _yolo_names(archive: Archive) -> list[str]:
    files = archive.files
    yamls = sorted(n for n in files if "/" not in n and n.lower().endswith((".yaml", ".yml")))
    yamls.sort(key=lambda n: n.lower() not in ("data.yaml", "data.yml"))
    if yamls:
        names = yaml_names(archive.text(yamls[0]), yamls[0])
        where = yamls[0]
    else:
        where = next((n for n in ("classes.txt", "obj.names", "labels/classes.txt") if n in files), "")
        if not where:
            raise InvalidArgument("no class names found: add data.yaml (names: [...]) or classes.txt to the zip")
        names = [line.strip() for line in archive.text(where).splitlines() if line.strip()]
    if not names:
        raise InvalidArgument(f"{where} lists no class names")
    return [_category_name(name, f"{where} class {i}") for i, name in enumerate(names)]


def _label_file(image_path: str, files: dict[str, Any]) -> str | None:
    """Ultralytics layout (…/images/… → …/labels/….txt), else Darknet's (the .txt beside the image)."""
    stem = posixpath.splitext(image_path)[0]
    parts = stem.split("/")
    candidates = []
    if "images" in parts[:-1]:
        at = len(parts) - 2 - parts[-2::-1].index("images")
        candidates.append("/".join([*parts[:at], "labels", *parts[at + 1 :]]) + ".txt")
    candidates.append(stem + ".txt")
    return next((c for c in candidates if c in files), None)


def _yolo_labels(archive: Archive, path: str, names: Sequence[str]) -> tuple[Label, ...]:
    labels = []
    for number, line in enumerate(archive.text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            index = int(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            values = []
        if len(fields) != 5 or len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise InvalidArgument(
                f"{path} line {number}: expected 'class x_center y_center width height', got {line.strip()[:60]!r}"
            )
        if not 0 <= index < len(names):
            raise InvalidArgument(f"{path} line {number}: class {index} is not one of the {len(names)} names")
        cx, cy, width, height = values
        if width < 0 or height < 0:
            raise InvalidArgument(f"{path} line {number}: negative box size")
        labels.append(Label(names[index], (cx, cy, width, height)))
    return tuple(labels)


def _read_yolo(archive: Archive) -> Dataset:
    names = _yolo_names(archive)
    images = sorted(n for n in archive.files if n.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise InvalidArgument("no .jpg or .png images in the zip (expected images/… beside labels/…)")
    members = []
    for image in images:
        label_file = _label_file(image, archive.files)
        labels = _yolo_labels(archive, label_file, names) if label_file else ()  # no file: no objects
        members.append(Member(image, labels, normalised=True))
    return Dataset("import:yolo", tuple(dict.fromkeys(names)), tuple(members))


# --- preparing images (decode once, check every box) -------------------------------------------


@dataclass
class Prepared:
    """An image that decoded, with its labels in pixels; holds no bytes (they stay in the zip)."""

    path: str
    sha256: str
    width: int
    height: int
    content_type: str
    size_bytes: int
    labels: list[Label]


@dataclass
class Preparation:
    images: list[Prepared] = field(default_factory=list)
    skipped: int = 0
    duplicates: int = 0  # the same bytes twice in the archive
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("… further warnings left out")


def _in_pixels(label: Label, width: int, height: int) -> Label:
    cx, cy, w, h = label.box
    return Label(label.category, ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height))


def _check_labels(path: str, labels: Iterable[Label], width: int, height: int) -> None:
    size = schema.Image(width=width, height=height)  # the checks only read the size
    for i, label in enumerate(labels):
        x, y, w, h = label.box
        check_box(f"{path}: box {i} ({label.category})", geometry_pb2.Box(x=x, y=y, width=w, height=h), size)
        for outline in label.polygons:
            check_polygon(f"{path}: outline of box {i} ({label.category})", _polygon(outline), size)


def _inspect(archive: Archive, member: Member, max_bytes: int, max_pixels: int) -> Prepared | str:
    """The decoded image, or a warning saying why it is skipped."""
    try:
        image = decode_image(archive.read(member.path, max_bytes), max_bytes, max_pixels)
    except ServiceError as error:
        return f"{member.path}: skipped, {error.message}"
    labels = [_in_pixels(lb, image.width, image.height) if member.normalised else lb for lb in member.labels]
    _check_labels(member.path, labels, image.width, image.height)
    return Prepared(member.path, image.sha256, image.width, image.height, image.content_type, len(image.data), labels)


def prepare(archive: Archive, dataset: Dataset, max_bytes: int, max_pixels: int) -> Preparation:
    """Decode every image (in parallel: Pillow releases the GIL) and merge repeated bytes."""
    result = Preparation()
    seen: dict[str, Prepared] = {}
    with named_executor(IO_THREADS, "hub-dataset") as pool:
        found = pool.map(lambda m: _inspect(archive, m, max_bytes, max_pixels), dataset.members)
        try:
            outcomes = list(found)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a bad label ends the import: decode no further
            raise
        for outcome in outcomes:
            if isinstance(outcome, str):
                result.skipped += 1
                result.warn(outcome)
            elif (first := seen.get(outcome.sha256)) is not None:
                result.duplicates += 1
                first.labels.extend(lb for lb in outcome.labels if lb not in first.labels)
            else:
                seen[outcome.sha256] = outcome
                result.images.append(outcome)
    return result


# --- recording --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The project category that labels of one dataset category go to."""

    id: str
    type: int


def ensure_categories(
    session: Session, ref: project_service_pb2.ProjectRef, names: Sequence[str]
) -> tuple[dict[str, Target], int]:
    """Targets by name, creating missing box categories; returns them and how many were created."""
    project = get_project(session, ref)
    existing = {
        row.name: row
        for row in session.scalars(select(schema.Category).where(schema.Category.project_pk == project.pk))
    }
    for name in names:
        row = existing.get(name)
        if row is not None and row.type not in (BOX, SEGMENTATION):
            raise InvalidArgument(
                f"category {name!r} is a {_TYPE_NAMES.get(row.type, '?')} category in "
                f"{project.organization}/{project.name}; the dataset labels it with boxes"
            )
    missing = [name for name in names if name not in existing]
    now = utcnow()
    for i, name in enumerate(missing):
        existing[name] = schema.Category(
            id=str(uuid.uuid4()),
            project_pk=project.pk,
            name=name,
            type=BOX,
            color=DEFAULT_COLORS[(len(existing) + i) % len(DEFAULT_COLORS)],
            hotkey="",
            point_radius=0.0,
            create_time=now + timedelta(microseconds=i),  # keeps the archive's order in listings
        )
        session.add(existing[name])
    session.flush()
    return {name: Target(existing[name].id, existing[name].type) for name in names}, len(missing)


def _polygon(flat: Sequence[float]) -> geometry_pb2.Polygon:
    return geometry_pb2.Polygon(
        points=[geometry_pb2.Point(x=x, y=y) for x, y in zip(flat[::2], flat[1::2], strict=True)]
    )


def _shapes(label: Label, category_type: int) -> list[geometry_pb2.Shape]:
    x, y, w, h = label.box
    if category_type == SEGMENTATION:
        outlines = label.polygons or ((x, y, x + w, y, x + w, y + h, x, y + h),)
        return [geometry_pb2.Shape(polygon=_polygon(outline)) for outline in outlines]
    return [geometry_pb2.Shape(box=geometry_pb2.Box(x=x, y=y, width=w, height=h))]


@dataclass(frozen=True)
class Recorded:
    added: int
    duplicates: int
    annotations: int


def record_batch(
    session: Session,
    ref: project_service_pb2.ProjectRef,
    batch: Sequence[Prepared],
    targets: dict[str, Target],
    tags: Sequence[str],
    source: str,
) -> Recorded:
    """Rows for a batch whose blobs are stored: new images, tags, and the annotations not yet there."""
    project = get_project(session, ref)
    shas = [p.sha256 for p in batch]
    rows = {
        row.sha256: row
        for row in session.scalars(
            select(schema.Image).where(schema.Image.project_pk == project.pk, schema.Image.sha256.in_(shas))
        )
    }
    old_pks = [row.pk for row in rows.values()]
    now = utcnow()
    new = [
        schema.Image(
            project_pk=project.pk,
            sha256=p.sha256,
            camera_id="",
            source=source,
            create_time=None,
            upload_time=now,
            state=image_pb2.IMAGE_STATE_COMPLETE,
            width=p.width,
            height=p.height,
            content_type=p.content_type,
            size_bytes=p.size_bytes,
            priority=0.0,
            annotation_count=0,
            detection_count=0,
        )
        for p in batch
        if p.sha256 not in rows
    ]
    session.add_all(new)
    session.flush()
    for row in new:
        rows[row.sha256] = row
        EventBus.append(session, event_service_pb2.EVENT_TYPE_IMAGE_ADDED, project, row.sha256)

    pks = [row.pk for row in rows.values()]
    tagged = set(
        session.execute(select(schema.ImageTag.image_pk, schema.ImageTag.tag).where(schema.ImageTag.image_pk.in_(pks)))
    )
    session.add_all(schema.ImageTag(image_pk=pk, tag=t) for pk in pks for t in tags if (pk, t) not in tagged)

    have = {
        (pk, category_id, bytes(shape))
        for pk, category_id, shape in session.execute(
            select(schema.Annotation.image_pk, schema.Annotation.category_id, schema.Annotation.shape).where(
                schema.Annotation.image_pk.in_(old_pks)
            )
        )
    }
    added = 0
    for prepared in batch:
        row = rows[prepared.sha256]
        for label in prepared.labels:
            target = targets[label.category]
            for shape in _shapes(label, target.type):
                key = (row.pk, target.id, shape.SerializeToString())
                if key in have:
                    continue
                have.add(key)
                session.add(
                    schema.Annotation(
                        id=str(uuid.uuid4()),
                        image_pk=row.pk,
                        category_id=target.id,
                        shape=key[2],
                        creator_person=source,
                        creator_model_version="",
                        create_time=now,
                        update_time=now,
                    )
                )
                row.annotation_count += 1
                added += 1
    session.flush()
    return Recorded(len(new), len(batch) - len(new), added)


def stored_images(session: Session, batch: Sequence[Prepared]) -> set[str]:
    """Hashes of the batch that some image row (of any project) has: their blobs are in the store."""
    shas = [p.sha256 for p in batch]
    return set(session.scalars(select(schema.Image.sha256).where(schema.Image.sha256.in_(shas))))


def put_blobs(archive: Archive, batch: Sequence[Prepared], store: ObjectStore, stored: set[str]) -> list[str]:
    """Store the bytes of the images not in ``stored``; returns their sha256.

    No existence check per blob: keys are content addresses, so rewriting one changes nothing,
    and a round trip saved per image is most of an import's time on S3.
    """

    def put(prepared: Prepared) -> str:
        store.put_bytes(image_key(prepared.sha256), archive.read(prepared.path, prepared.size_bytes))
        return prepared.sha256

    with named_executor(IO_THREADS, "hub-dataset") as pool:
        return list(pool.map(put, [p for p in batch if p.sha256 not in stored]))


def batches(items: Sequence[Prepared], size: int = BATCH_IMAGES) -> Iterator[Sequence[Prepared]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- export -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportCategory:
    name: str
    type: int


@dataclass(frozen=True)
class ExportImage:
    sha256: str
    content_type: str
    width: int
    height: int
    annotations: tuple[tuple[str, geometry_pb2.Shape], ...]  # category id, shape


@dataclass(frozen=True)
class Snapshot:
    """What an export holds, read in one transaction; blobs are content-addressed, so they cannot change."""

    title: str
    categories: dict[str, ExportCategory]  # by id, in the project's category order
    images: tuple[ExportImage, ...]


def snapshot(session: Session, ref: project_service_pb2.ProjectRef) -> Snapshot:
    project = get_project(session, ref)
    categories = {
        row.id: ExportCategory(row.name, row.type)
        for row in session.scalars(
            select(schema.Category)
            .where(schema.Category.project_pk == project.pk)
            .order_by(schema.Category.create_time, schema.Category.name)
        )
    }
    complete = (schema.Image.project_pk == project.pk, schema.Image.state == image_pb2.IMAGE_STATE_COMPLETE)
    shapes: dict[int, list[tuple[str, geometry_pb2.Shape]]] = {}
    query = (
        select(schema.Annotation.image_pk, schema.Annotation.category_id, schema.Annotation.shape)
        .join(schema.Image, schema.Image.pk == schema.Annotation.image_pk)
        .where(*complete)
        .order_by(schema.Annotation.create_time, schema.Annotation.id)
    )
    for image_pk, category_id, shape in session.execute(query):
        shapes.setdefault(image_pk, []).append((category_id, geometry_pb2.Shape.FromString(shape)))
    images = tuple(
        ExportImage(row.sha256, row.content_type, row.width, row.height, tuple(shapes.get(row.pk, ())))
        for row in session.scalars(
            select(schema.Image).where(*complete).order_by(schema.Image.upload_time, schema.Image.pk)
        )
    )
    return Snapshot(f"{project.organization}/{project.name}", categories, images)


def _f32(value: float) -> float:
    """A stored float32 as the shortest decimal that reads back to it (10.3, not 10.300000190734863)."""
    return float(str(np.float32(value)))


def _file_name(image: ExportImage) -> str:
    return image.sha256 + EXTENSIONS.get(image.content_type, ".jpg")


def _blobs(store: ObjectStore, images: Sequence[ExportImage]) -> Iterator[bytes]:
    """Image bytes in order, fetched a few at a time in parallel."""

    def read(image: ExportImage) -> bytes:
        try:
            return store.read_bytes(image_key(image.sha256))
        except BlobNotFound:
            raise DataLoss(f"image {image.sha256} is missing from the object store") from None

    with named_executor(IO_THREADS, "hub-dataset") as pool:
        for start in range(0, len(images), 4 * IO_THREADS):  # bounds the bytes held in memory
            yield from pool.map(read, images[start : start + 4 * IO_THREADS])


def _write(out: zipfile.ZipFile, name: str, data: bytes | str, compress: bool = True) -> None:
    info = zipfile.ZipInfo(name, date_time=utcnow().timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    out.writestr(info, data)


def _coco_annotation(number: int, image_id: int, category_id: int, shape: geometry_pb2.Shape) -> dict[str, Any] | None:
    kind = shape.WhichOneof("kind")
    entry: dict[str, Any] = {"id": number, "image_id": image_id, "category_id": category_id, "iscrowd": 0}
    if kind == "box":
        box = shape.box
        entry["bbox"] = [_f32(box.x), _f32(box.y), _f32(box.width), _f32(box.height)]
        entry["area"] = _f32(box.width * box.height)
        return entry
    if kind == "polygon":
        xs = [p.x for p in shape.polygon.points]
        ys = [p.y for p in shape.polygon.points]
        entry["segmentation"] = [[_f32(v) for p in shape.polygon.points for v in (p.x, p.y)]]
        entry["bbox"] = [_f32(min(xs)), _f32(min(ys)), _f32(max(xs) - min(xs)), _f32(max(ys) - min(ys))]
        shoelace = sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs)))
        entry["area"] = _f32(abs(shoelace) / 2)
        return entry
    return None  # points and whole-image labels have no COCO detection form


def _write_coco(out: zipfile.ZipFile, snap: Snapshot, blobs: Iterator[bytes]) -> None:
    kept = [cid for cid, c in snap.categories.items() if c.type in (BOX, SEGMENTATION)]
    coco_ids = {cid: number for number, cid in enumerate(kept, 1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for number, (image, data) in enumerate(zip(snap.images, blobs, strict=True), 1):
        _write(out, f"images/{_file_name(image)}", data, compress=False)  # JPEG and PNG are compressed already
        images.append({"id": number, "file_name": _file_name(image), "width": image.width, "height": image.height})
        for category_id, shape in image.annotations:
            if category_id in coco_ids:
                entry = _coco_annotation(len(annotations) + 1, number, coco_ids[category_id], shape)
                if entry is not None:
                    annotations.append(entry)
    doc = {
        "info": {"description": f"VisionLoop export of {snap.title}", "date_created": utcnow().isoformat()},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": coco_ids[cid], "name": snap.categories[cid].name, "supercategory": ""} for cid in kept],
    }
    _write(out, "annotations.json", json.dumps(doc, ensure_ascii=False))


def _yolo_line(index: int, box: geometry_pb2.Box, width: int, height: int) -> str | None:
    left, top = max(box.x, 0.0), max(box.y, 0.0)
    right, bottom = min(box.x + box.width, width), min(box.y + box.height, height)
    if right < left or bottom < top:
        return None
    cx, cy = (left + right) / 2 / width, (top + bottom) / 2 / height
    return f"{index} {cx:.6f} {cy:.6f} {(right - left) / width:.6f} {(bottom - top) / height:.6f}"


def _write_yolo(out: zipfile.ZipFile, snap: Snapshot, blobs: Iterator[bytes]) -> None:
    kept = [cid for cid, c in snap.categories.items() if c.type == BOX]
    indices = {cid: index for index, cid in enumerate(kept)}
    for image, data in zip(snap.images, blobs, strict=True):
        _write(out, f"images/{_file_name(image)}", data, compress=False)
        lines = [
            _yolo_line(indices[cid], shape.box, image.width, image.height)
            for cid, shape in image.annotations
            if cid in indices and shape.WhichOneof("kind") == "box"
        ]
        _write(out, f"labels/{image.sha256}.txt", "".join(f"{line}\n" for line in lines if line))
    names = "".join(
        f"  {i}: {json.dumps(snap.categories[cid].name, ensure_ascii=False)}\n" for i, cid in enumerate(kept)
    )
    _write(
        out,
        "data.yaml",
        f"# VisionLoop export of {snap.title}\npath: .\ntrain: images\nval: images\nnc: {len(kept)}\nnames:\n{names}",
    )


def write_export(path: Path, snap: Snapshot, fmt: int, store: ObjectStore) -> tuple[str, int]:
    """Write the dataset zip to ``path``; returns its sha256 and size."""
    writer: Callable[[zipfile.ZipFile, Snapshot, Iterator[bytes]], None] = (
        _write_coco if format_name(fmt) == "coco" else _write_yolo
    )
    with zipfile.ZipFile(path, "w", allowZip64=True) as out:
        writer(out, snap, _blobs(store, snap.images))
    return hash_file(path)

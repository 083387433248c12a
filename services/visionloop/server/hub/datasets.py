"""Dataset archives: COCO detection JSON and YOLO txt, read from and written to zip files.

Everything here blocks (zip, Pillow, object store, SQL on a given session); the hub runs it in
worker threads. An import goes in steps so that a bad archive changes nothing:
``Archive.open`` checks the zip as untrusted input, ``read_dataset`` parses the labels,
``prepare`` decodes every image and checks every box against it, ``ensure_categories`` creates
the missing categories, ``to_shapes`` gives each object the shape its category takes, and only
then ``put_blobs`` + ``record_batch`` store images and annotations, ``BATCH_IMAGES`` per
transaction (one huge transaction would hold SQLite's write lock for minutes). A batch that
fails leaves the earlier ones; importing the archive again completes it, because nothing is
added twice.

Layouts read (docs/datasets.md has the table): COCO reads every instances file
(``annotations/instances_<subset>.json``, ``annotations.json`` or ``<subset>.json`` at the top,
Roboflow's ``<subset>/_annotations.coco.json``) and finds each ``file_name`` beside it, in
``images/<subset>/`` or ``images/``, at the top, or as the one file whose path ends with it. YOLO
takes ``data.yaml`` (PyYAML) or ``classes.txt`` / ``obj.names`` and, per image,
``labels/…/<stem>.txt`` mirroring ``images/…`` or the ``.txt`` beside it; an image without one
has no objects. A zip of one folder is read from inside that folder.

Choices:

- A subset becomes a tag (``val``, ``valid``, ``validation`` also ``test``, which the trainer
  holds out); export puts each image in the first subset its tags name, else ``default``.
- Missing categories are created as segmentation categories when the dataset gives them outlines
  or masks, else as box categories. Segmentation categories keep one outline as a polygon,
  several as a multi-polygon, an RLE as a mask, and no outline as the bbox's rectangle. A box
  category keeps the box and the import warns, per object, that the outline is left out. Point
  and classification categories of the same name are refused.
- Crowd regions (COCO ``iscrowd``) are stored as such and exported with ``iscrowd: 1``.
- What cannot be read is refused naming the file and object; what cannot be kept is reported
  per item in ``warnings``: nothing is dropped silently.
- New images are COMPLETE (an imported dataset is labelled) and come from ``import:<format>``.
  Images already in the project (same bytes) keep their state, get the tags, and receive only
  annotations they do not have yet (same category and shape).
- Export holds the COMPLETE images only, as the contract says: images still in the workflow
  would hand out partial labels as ground truth. COCO carries box and segmentation annotations
  (datumaro's layout), YOLO is detection: boxes, and the bounding boxes of outlines and masks
  (clipped to the image, as YOLO readers drop out-of-range boxes); crowd regions have no YOLO
  form and points and whole-image labels no form in either, so they are left out.
"""

from __future__ import annotations

import json
import math
import posixpath
import stat
import threading
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from visionloop.common.v1 import category_pb2, geometry_pb2, image_pb2
from visionloop.lib import shapes
from visionloop.lib.archives import archive_problem, zip_entry_problem
from visionloop.lib.storage import BlobNotFound, ObjectStore
from visionloop.loop.v1 import annotation_service_pb2 as pb
from visionloop.loop.v1 import event_service_pb2, project_service_pb2
from visionloop.runtime.errors import DataLoss, InvalidArgument, ResourceExhausted, ServiceError
from visionloop.runtime.threads import named_executor
from visionloop.server.hub.db import schema
from visionloop.server.hub.images import decode_image, image_key
from visionloop.server.hub.labels import check_box, check_polygon
from visionloop.server.hub.projects import DEFAULT_COLORS
from visionloop.server.hub.state import EventBus, get_project, utcnow
from visionloop.server.hub.transfer import hash_file

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

FORMATS: dict[int, str] = {pb.DATASET_FORMAT_COCO: "coco", pb.DATASET_FORMAT_YOLO: "yolo"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}
BOX = category_pb2.CATEGORY_TYPE_BOX
SEGMENTATION = category_pb2.CATEGORY_TYPE_SEGMENTATION
_TYPE_NAMES: dict[int, str] = {  # by the stored category type
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
        if (problem := archive_problem(entries, MAX_UNCOMPRESSED_BYTES, MAX_ENTRIES)) is not None:
            raise ResourceExhausted(problem)
        files: dict[str, zipfile.ZipInfo] = {}
        for info in entries:
            if (problem := zip_entry_problem(info)) is not None:
                raise InvalidArgument(f"zip entry {info.filename!r} {problem}")
            name = _normalise(info.filename)
            if info.is_dir() or not name or _is_junk(name):
                continue
            if name in files:
                raise InvalidArgument(f"zip entry {info.filename!r} appears twice")
            files[name] = info
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

# Subset names that hold data out: their images are also tagged ``test``, which the trainer holds out.
HELD_OUT_SUBSETS = ("val", "valid", "validation", "test")
KNOWN_SUBSETS = ("train", *HELD_OUT_SUBSETS)
DEFAULT_SUBSET = "default"  # datumaro's name for data of no subset


def subset_tags(subset: str) -> tuple[str, ...]:
    """The tags an image of a dataset subset gets: its name, and ``test`` for held-out subsets."""
    if not subset or subset == DEFAULT_SUBSET:
        return ()
    if len(subset) > 128:
        raise InvalidArgument(f"subset {subset[:20]!r}... is longer than 128 characters (it becomes a tag)")
    return (subset, "test") if subset in HELD_OUT_SUBSETS and subset != "test" else (subset,)


@dataclass(frozen=True)
class Label:
    """One object: a category name and a box, plus its outlines or COCO RLE mask when the archive has them."""

    category: str
    box: tuple[float, float, float, float]  # x, y, width, height in pixels (YOLO: see Member.normalised)
    polygons: tuple[tuple[float, ...], ...] = ()  # flat x, y pairs in pixels (YOLO: fractions)
    rle: Any = None  # a COCO RLE, read once the image's size is known
    crowd: bool = False  # COCO iscrowd
    mask: geometry_pb2.Mask | None = None  # the RLE, read
    where: str = field(default="", compare=False)  # names the object in warnings, e.g. "instances_val.json #4"

    @property
    def outlined(self) -> bool:
        return bool(self.polygons) or self.rle is not None or self.mask is not None


@dataclass(frozen=True)
class Member:
    """An image file of the archive, its labels and the tags of its subset."""

    path: str
    labels: tuple[Label, ...]
    normalised: bool = False  # YOLO: box is centre x, centre y, width, height as fractions of the image
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Dataset:
    source: str  # image source and annotation creator, e.g. "import:coco"
    categories: tuple[str, ...]  # in the archive's order
    members: tuple[Member, ...]
    notes: tuple[str, ...] = ()  # files of the archive that are not read, and why

    @property
    def outlined(self) -> frozenset[str]:
        """Categories with outlines or masks: created as segmentation categories."""
        return frozenset(label.category for m in self.members for label in m.labels if label.outlined)


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


def _basenames(files: Iterable[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in files:
        found.setdefault(posixpath.basename(path), []).append(path)
    return found


# COCO

# COCO's task prefixes (as datumaro names its files); only instances (detection) files are read.
_COCO_TASKS = ("instances", "person_keypoints", "captions", "labels", "panoptic", "image_info", "stuff")


@dataclass(frozen=True)
class CocoFile:
    name: str  # path in the archive
    subset: str


def _coco_files(files: Iterable[str]) -> tuple[list[CocoFile], list[str]]:
    """The COCO JSON files to read, with their subsets, and notes on JSON files left alone.

    Candidates lie at the top, under ``annotations/`` (COCO, datumaro: ``instances_<subset>.json``)
    or one folder down as Roboflow's ``<subset>/_annotations.coco.json``.
    """
    found, notes = [], []
    for name in sorted(files):
        parts = name.split("/")
        if not name.lower().endswith(".json"):
            continue
        stem = posixpath.splitext(parts[-1])[0]
        roboflow = len(parts) == 2 and parts[1] == "_annotations.coco.json"
        if not (len(parts) == 1 or (len(parts) == 2 and parts[0] == "annotations") or roboflow):
            continue
        task = next((t for t in _COCO_TASKS if stem == t or stem.startswith(f"{t}_")), None)
        if task not in (None, "instances"):
            notes.append(f"{name}: not read (COCO {task} file; VisionLoop imports instances: boxes and outlines)")
            continue
        if roboflow:
            subset = parts[0]
        elif task == "instances":
            subset = stem[len("instances_") :] if stem != "instances" else ""
        else:
            subset = stem if stem in KNOWN_SUBSETS else ""
        found.append(CocoFile(name, subset))
    if not found:
        raise InvalidArgument(
            "no COCO JSON found: put annotations.json at the top of the zip or "
            "instances_<subset>.json files under annotations/"
        )
    return found, notes


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


def _coco_segmentation(value: Any, where: str) -> tuple[tuple[tuple[float, ...], ...], Any]:
    """(outlines, RLE) of a ``segmentation``: a list of flat outlines, or an RLE object."""
    if value is None or value == []:
        return (), None
    if isinstance(value, dict):
        return (), value  # checked against the image's size once it is decoded
    if not isinstance(value, list):
        raise InvalidArgument(f"{where} must be a list of outlines or an RLE object, got {str(value)[:80]}")
    if all(_number(v) for v in value):  # some writers flatten a single outline
        value = [value]
    outlines = []
    for k, outline in enumerate(value):
        if not (isinstance(outline, list) and len(outline) % 2 == 0 and all(map(_number, outline))):
            raise InvalidArgument(f"{where}[{k}] must be a flat list of x, y numbers, got {str(outline)[:80]}")
        if len(outline) < 6:
            raise InvalidArgument(f"{where}[{k}] has {len(outline) // 2} points; an outline needs at least 3")
        outlines.append(tuple(float(v) for v in outline))
    return tuple(outlines), None


def _coco_crowd(value: Any, where: str) -> bool:
    if value in (None, 0, 1):  # True and False compare equal to 1 and 0
        return bool(value)
    raise InvalidArgument(f"{where} must be 0 or 1, got {str(value)[:20]}")


class _Resolver:
    """Where a COCO ``file_name`` lies in the archive."""

    def __init__(self, files: dict[str, Any]) -> None:
        self.files = files
        self.basenames = _basenames(files)

    def __call__(self, coco: CocoFile, file_name: str) -> str | None:
        """Beside the JSON, in the subset's images folder (datumaro: ``images/<subset>/``), in an
        images folder, at the top; else the one file whose path ends with it."""
        clean = _normalise(file_name)
        json_dir = posixpath.dirname(coco.name)
        root = posixpath.dirname(json_dir) if posixpath.basename(json_dir) == "annotations" else json_dir
        candidates = [posixpath.join(json_dir, clean)]
        if coco.subset:
            candidates += [posixpath.join(root, "images", coco.subset, clean), posixpath.join(root, coco.subset, clean)]
        candidates += [posixpath.join(json_dir, "images", clean), posixpath.join(root, "images", clean), clean]
        for candidate in candidates:
            if candidate in self.files:
                return candidate
        base = posixpath.basename(clean)
        matches = [p for p in self.basenames.get(base, []) if p == clean or p.endswith("/" + clean)]
        if len(matches) > 1 and coco.subset:  # the same path in several subsets' folders
            matches = [p for p in matches if coco.subset in p.split("/")[:-1]]
        return matches[0] if len(matches) == 1 else None


def _read_coco_file(archive: Archive, coco: CocoFile, resolve: _Resolver) -> tuple[list[str], list[Member]] | None:
    """Categories and members of one COCO file; None for a JSON file that is no COCO instances file."""
    name = coco.name
    try:
        doc = json.loads(archive.read(name, MAX_JSON_BYTES), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidArgument(f"{name} is not valid JSON: {error}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{name} must be a COCO object with images, categories and annotations")
    if "images" not in doc and "annotations" not in doc and "categories" not in doc:
        return None

    categories: dict[int | str, str] = {}
    for i, entry in enumerate(_coco_list(doc, "categories", name)):
        where = f"{name} categories[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where} must be an object with id and name")
        categories[_coco_id(entry.get("id"), f"{where}.id")] = _category_name(entry.get("name"), f"{where}.name")

    paths: dict[int | str, str] = {}
    for i, entry in enumerate(_coco_list(doc, "images", name)):
        where = f"{name} images[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
            raise InvalidArgument(f"{where} must be an object with id and file_name")
        image_id = _coco_id(entry.get("id"), f"{where}.id")
        if image_id in paths:
            raise InvalidArgument(f"{where}.id {image_id!r} appears twice")
        path = resolve(coco, entry["file_name"])
        if path is None:
            raise InvalidArgument(f"{where}.file_name {entry['file_name']!r} is not in the zip (or not one file)")
        paths[image_id] = path

    labels: dict[int | str, list[Label]] = {image_id: [] for image_id in paths}
    for i, entry in enumerate(_coco_list(doc, "annotations", name, required=False)):
        where = f"{name} annotations[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where} must be an object")
        image_ref, category_id = entry.get("image_id"), entry.get("category_id")
        if not _hashable_id(image_ref) or image_ref not in labels:
            raise InvalidArgument(f"{where}.image_id {image_ref!r} is not in images")
        if not _hashable_id(category_id) or category_id not in categories:
            raise InvalidArgument(f"{where}.category_id {category_id!r} is not in categories")
        box = _coco_box(entry.get("bbox"), f"{where}.bbox")
        polygons, rle = _coco_segmentation(entry.get("segmentation"), f"{where}.segmentation")
        crowd = _coco_crowd(entry.get("iscrowd"), f"{where}.iscrowd")
        labels[image_ref].append(Label(categories[category_id], box, polygons, rle, crowd, where=where))

    tags = subset_tags(coco.subset)
    members = [Member(paths[image_id], tuple(found), tags=tags) for image_id, found in labels.items()]
    return list(categories.values()), members


def _read_coco(archive: Archive) -> Dataset:
    coco_files, notes = _coco_files(archive.files)
    resolve = _Resolver(archive.files)
    names: list[str] = []
    members: list[Member] = []
    for coco in coco_files:
        read = _read_coco_file(archive, coco, resolve)
        if read is None:
            notes.append(f"{coco.name}: not read (no images, annotations or categories: not a COCO file)")
            continue
        names += read[0]
        members += read[1]
    if not members and not names:
        raise InvalidArgument(f"no COCO instances file in the zip ({'; '.join(notes)})")
    return Dataset("import:coco", tuple(dict.fromkeys(names)), tuple(members), tuple(notes))


# YOLO


def yaml_names(text: str, where: str) -> list[str]:
    """Class names from an Ultralytics data.yaml: ``names`` as a list or an index map.

    Read by a YAML parser, so anything PyYAML and Ultralytics write (quoting, escapes such as
    ``"\\xE4"``, flow and block styles, comments) reads as they meant it.
    """
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InvalidArgument(f"{where} is not valid YAML: {str(error)[:200]}") from None
    if not isinstance(doc, dict) or "names" not in doc:
        raise InvalidArgument(f"{where} has no names: list of classes")
    names = doc["names"]
    if isinstance(names, dict):
        indexed: dict[int, Any] = {}
        for key, value in names.items():
            index = key if isinstance(key, int) and not isinstance(key, bool) else None
            if isinstance(key, str) and key.strip().isdigit():
                index = int(key)
            if index is None:
                raise InvalidArgument(f"{where}: names keys must be class indices, got {str(key)[:40]!r}")
            indexed[index] = value
        if sorted(indexed) != list(range(len(indexed))):
            raise InvalidArgument(f"{where}: names indices must be 0..{len(indexed) - 1}")
        names = [indexed[k] for k in range(len(indexed))]
    if not isinstance(names, list):
        raise InvalidArgument(f"{where}: names must be a list, e.g. names: [weed, stem]")
    # a class named 1 or yes reads as a number or a boolean: its name is what was written
    return [value if isinstance(value, str) else str(value) for value in names]


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
    """Detection lines (class, centre, size) and segmentation lines (class, then 3 or more x, y)."""
    labels = []
    for number, line in enumerate(archive.text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path} line {number}"
        try:
            index = int(fields[0])
            values = [float(v) for v in fields[1:]]
        except ValueError:
            values = []
        box_line = len(values) == 4
        outline = len(values) >= 6 and len(values) % 2 == 0
        if not (box_line or outline) or not all(math.isfinite(v) for v in values):
            raise InvalidArgument(
                f"{where}: expected 'class x_center y_center width height' or 'class x1 y1 x2 y2 x3 y3 …', "
                f"got {line.strip()[:60]!r}"
            )
        if not 0 <= index < len(names):
            raise InvalidArgument(f"{where}: class {index} is not one of the {len(names)} names")
        if box_line:
            cx, cy, width, height = values
            if width < 0 or height < 0:
                raise InvalidArgument(f"{where}: negative box size")
            labels.append(Label(names[index], (cx, cy, width, height), where=where))
        else:
            xs, ys = values[::2], values[1::2]
            left, top, right, bottom = min(xs), min(ys), max(xs), max(ys)
            centre = ((left + right) / 2, (top + bottom) / 2, right - left, bottom - top)
            labels.append(Label(names[index], centre, (tuple(values),), where=where))
    return tuple(labels)


def _yolo_subset(image_path: str) -> str:
    """The subset an image's folders name: Ultralytics' ``images/val/…``, Roboflow's ``valid/images/…``."""
    return next((part for part in image_path.split("/")[:-1] if part in KNOWN_SUBSETS), "")


def _read_yolo(archive: Archive) -> Dataset:
    names = _yolo_names(archive)
    images = sorted(n for n in archive.files if n.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise InvalidArgument("no .jpg or .png images in the zip (expected images/… beside labels/…)")
    members = []
    for image in images:
        label_file = _label_file(image, archive.files)
        labels = _yolo_labels(archive, label_file, names) if label_file else ()  # no file: no objects
        members.append(Member(image, labels, normalised=True, tags=subset_tags(_yolo_subset(image))))
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
    tags: set[str] = field(default_factory=set)
    # what is stored: (category id, shape, crowd), filled by ``to_shapes`` once categories exist
    shapes: list[tuple[str, geometry_pb2.Shape, bool]] = field(default_factory=list)


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
    polygons = tuple(
        tuple(v * (width if k % 2 == 0 else height) for k, v in enumerate(outline)) for outline in label.polygons
    )
    box = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
    return replace(label, box=box, polygons=polygons)


def _read_mask(path: str, label: Label, width: int, height: int) -> Label:
    if label.rle is None:
        return label
    try:
        mask = shapes.from_coco_rle(label.rle, width, height)
    except shapes.BadMask as error:
        raise InvalidArgument(f"{path}: {label.where or 'object'}.segmentation: {error}") from None
    return replace(label, rle=None, mask=mask)


def _check_labels(path: str, labels: Iterable[Label], width: int, height: int) -> None:
    size = schema.Image(width=width, height=height)  # the checks only read the size
    for i, label in enumerate(labels):
        x, y, w, h = label.box
        name = f"{path}: box {i} ({label.category})"
        if label.mask is not None and w == 0 and h == 0:  # COCO allows an RLE region without a bbox
            continue
        check_box(name, geometry_pb2.Box(x=x, y=y, width=w, height=h), size)
        for outline in label.polygons:
            check_polygon(f"{path}: outline of box {i} ({label.category})", _polygon(outline), size)


def _inspect(archive: Archive, member: Member, max_bytes: int, max_pixels: int) -> Prepared | str:
    """The decoded image, or a warning saying why it is skipped."""
    try:
        image = decode_image(archive.read(member.path, max_bytes), max_bytes, max_pixels)
    except ServiceError as error:
        return f"{member.path}: skipped, {error.message}"
    labels = [_in_pixels(lb, image.width, image.height) if member.normalised else lb for lb in member.labels]
    labels = [_read_mask(member.path, lb, image.width, image.height) for lb in labels]
    _check_labels(member.path, labels, image.width, image.height)
    return Prepared(
        member.path,
        image.sha256,
        image.width,
        image.height,
        image.content_type,
        len(image.data),
        labels,
        set(member.tags),
    )


def prepare(archive: Archive, dataset: Dataset, max_bytes: int, max_pixels: int) -> Preparation:
    """Decode every image (in parallel: Pillow releases the GIL) and merge repeated bytes."""
    result = Preparation()
    for note in dataset.notes:
        result.warn(note)
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
                first.tags |= outcome.tags
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
    session: Session, ref: project_service_pb2.ProjectRef, names: Sequence[str], outlined: Iterable[str] = ()
) -> tuple[dict[str, Target], int]:
    """Targets by name, creating missing categories; returns them and how many were created.

    A missing category is created as a segmentation category when the dataset gives some of its
    objects outlines or masks (``outlined``), else as a box category.
    """
    outlined = set(outlined)
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
            type=SEGMENTATION if name in outlined else BOX,
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


def _shape(label: Label, category_type: int) -> geometry_pb2.Shape:
    x, y, w, h = label.box
    if category_type == SEGMENTATION:
        if label.mask is not None:
            return geometry_pb2.Shape(mask=label.mask)
        if len(label.polygons) > 1:
            return geometry_pb2.Shape(multi_polygon=geometry_pb2.MultiPolygon(polygons=map(_polygon, label.polygons)))
        outline = label.polygons[0] if label.polygons else (x, y, x + w, y, x + w, y + h, x, y + h)
        return geometry_pb2.Shape(polygon=_polygon(outline))
    if w == 0 and h == 0 and label.mask is not None:  # an RLE region without a bbox: its mask's
        box = shapes.mask_box(label.mask) or (0.0, 0.0, 0.0, 0.0)
        return geometry_pb2.Shape(box=geometry_pb2.Box(x=box[0], y=box[1], width=box[2], height=box[3]))
    return geometry_pb2.Shape(box=geometry_pb2.Box(x=x, y=y, width=w, height=h))


def to_shapes(preparation: Preparation, targets: dict[str, Target]) -> None:
    """Fill each image's ``shapes`` for its categories; warn for each outline a box category drops."""
    for prepared in preparation.images:
        prepared.shapes = []
        for label in prepared.labels:
            target = targets[label.category]
            if target.type == BOX and label.outlined:
                preparation.warn(
                    f"{prepared.path}: {label.where or 'an object'} ({label.category}): its outline is left out, "
                    f"{label.category!r} is a box category in the project; its box is kept"
                )
            prepared.shapes.append((target.id, _shape(label, target.type), label.crowd))


@dataclass(frozen=True)
class Recorded:
    added: int
    duplicates: int
    annotations: int


def record_batch(
    session: Session,
    ref: project_service_pb2.ProjectRef,
    batch: Sequence[Prepared],
    tags: Sequence[str],
    source: str,
) -> Recorded:
    """Rows for a batch whose blobs are stored (its ``shapes`` filled): new images, ``tags`` and each
    image's own, and the annotations not yet there."""
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
    query = select(schema.ImageTag.image_pk, schema.ImageTag.tag).where(schema.ImageTag.image_pk.in_(pks))
    tagged = {(pk, tag) for pk, tag in session.execute(query)}
    for prepared in batch:
        pk = rows[prepared.sha256].pk
        for tag in sorted({*tags, *prepared.tags}):
            if (pk, tag) not in tagged:
                tagged.add((pk, tag))
                session.add(schema.ImageTag(image_pk=pk, tag=tag))

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
        for category_id, shape, crowd in prepared.shapes:
            key = (row.pk, category_id, shape.SerializeToString())
            if key in have:
                continue
            have.add(key)
            session.add(
                schema.Annotation(
                    id=str(uuid.uuid4()),
                    image_pk=row.pk,
                    category_id=category_id,
                    shape=key[2],
                    crowd=crowd,
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
class ExportAnnotation:
    category_id: str
    shape: geometry_pb2.Shape
    crowd: bool


@dataclass(frozen=True)
class ExportImage:
    sha256: str
    content_type: str
    width: int
    height: int
    annotations: tuple[ExportAnnotation, ...]
    subset: str  # its folder and file, from its tags: train, val, ..., else default


@dataclass(frozen=True)
class Snapshot:
    """What an export holds, read in one transaction; blobs are content-addressed, so they cannot change."""

    title: str
    categories: dict[str, ExportCategory]  # by id, in the project's category order
    images: tuple[ExportImage, ...]

    def subsets(self) -> list[str]:
        return sorted({image.subset for image in self.images}, key=_subset_order)


def _subset_order(subset: str) -> tuple[int, str]:
    return ([*KNOWN_SUBSETS, DEFAULT_SUBSET].index(subset), subset)


def _subset(tags: Iterable[str]) -> str:
    """The first subset an image's tags name (an image imported from ``val`` has tags val and test)."""
    present = set(tags)
    return next((s for s in KNOWN_SUBSETS if s in present), DEFAULT_SUBSET)


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
    annotations: dict[int, list[ExportAnnotation]] = {}
    query = (
        select(
            schema.Annotation.image_pk, schema.Annotation.category_id, schema.Annotation.shape, schema.Annotation.crowd
        )
        .join(schema.Image, schema.Image.pk == schema.Annotation.image_pk)
        .where(*complete)
        .order_by(schema.Annotation.create_time, schema.Annotation.id)
    )
    for image_pk, category_id, shape, crowd in session.execute(query):
        entry = ExportAnnotation(category_id, geometry_pb2.Shape.FromString(shape), crowd)
        annotations.setdefault(image_pk, []).append(entry)
    tags: dict[int, list[str]] = {}
    subset_rows = (
        select(schema.ImageTag.image_pk, schema.ImageTag.tag)
        .join(schema.Image, schema.Image.pk == schema.ImageTag.image_pk)
        .where(*complete, schema.ImageTag.tag.in_(KNOWN_SUBSETS))
    )
    for image_pk, tag in session.execute(subset_rows):
        tags.setdefault(image_pk, []).append(tag)
    images = tuple(
        ExportImage(
            row.sha256,
            row.content_type,
            row.width,
            row.height,
            tuple(annotations.get(row.pk, ())),
            _subset(tags.get(row.pk, ())),
        )
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


def _folders(out: zipfile.ZipFile, *names: str) -> None:
    """Folder entries: readers that look for a subset's folder find it even when it is empty."""
    for name in names:
        info = zipfile.ZipInfo(name.rstrip("/") + "/", date_time=utcnow().timetuple()[:6])
        info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10  # MS-DOS directory flag
        out.writestr(info, b"")


def _coco_annotation(number: int, image_id: int, category_id: int, item: ExportAnnotation) -> dict[str, Any] | None:
    shape = item.shape
    kind = shape.WhichOneof("kind")
    box = shapes.shape_box(shape)
    if box is None:
        return None  # points and whole-image labels have no COCO detection form
    entry: dict[str, Any] = {"id": number, "image_id": image_id, "category_id": category_id}
    if kind == "mask":
        entry["segmentation"] = shapes.to_coco_rle(shape.mask)
        area = float(shapes.mask_area(shape.mask))
    elif kind in ("polygon", "multi_polygon"):
        outlines = shapes.outlines(shape)
        entry["segmentation"] = [[_f32(v) for p in outline.points for v in (p.x, p.y)] for outline in outlines]
        area = sum(shapes.polygon_area(outline) for outline in outlines)
    else:
        entry["segmentation"] = []
        area = box[2] * box[3]
    entry["bbox"] = [_f32(v) for v in box]
    entry["area"] = _f32(area)
    entry["iscrowd"] = int(item.crowd)
    return entry


def _write_coco(out: zipfile.ZipFile, snap: Snapshot, blobs: Iterator[bytes]) -> None:
    """datumaro's COCO layout: ``annotations/instances_<subset>.json``, ``images/<subset>/``."""
    kept = [cid for cid, c in snap.categories.items() if c.type in (BOX, SEGMENTATION)]
    coco_ids = {cid: number for number, cid in enumerate(kept, 1)}
    categories = [{"id": coco_ids[cid], "name": snap.categories[cid].name, "supercategory": ""} for cid in kept]
    docs: dict[str, dict[str, Any]] = {
        subset: {
            "info": {"description": f"VisionLoop export of {snap.title}", "date_created": utcnow().isoformat()},
            "licenses": [],
            "images": [],
            "annotations": [],
            "categories": categories,
        }
        for subset in snap.subsets() or [DEFAULT_SUBSET]
    }
    _folders(out, "annotations", *(f"images/{subset}" for subset in docs))
    annotation_count = 0
    for number, (image, data) in enumerate(zip(snap.images, blobs, strict=True), 1):
        doc = docs[image.subset]
        # JPEG and PNG are compressed already
        _write(out, f"images/{image.subset}/{_file_name(image)}", data, compress=False)
        doc["images"].append(
            {"id": number, "file_name": _file_name(image), "width": image.width, "height": image.height}
        )
        for item in image.annotations:
            if item.category_id in coco_ids:
                entry = _coco_annotation(annotation_count + 1, number, coco_ids[item.category_id], item)
                if entry is not None:
                    annotation_count += 1
                    doc["annotations"].append(entry)
    for subset, doc in docs.items():
        _write(out, f"annotations/instances_{subset}.json", json.dumps(doc, ensure_ascii=False))


def _yolo_line(index: int, box: shapes.Box, width: int, height: int) -> str | None:
    x, y, w, h = box
    left, top = max(x, 0.0), max(y, 0.0)
    right, bottom = min(x + w, width), min(y + h, height)
    if right < left or bottom < top:
        return None
    cx, cy = (left + right) / 2 / width, (top + bottom) / 2 / height
    return f"{index} {cx:.6f} {cy:.6f} {(right - left) / width:.6f} {(bottom - top) / height:.6f}"


def _data_yaml(snap: Snapshot, names: list[str]) -> str:
    """Ultralytics' data.yaml: folders of the train and val subsets (val falls back to train) and
    ``names`` as an index map, ``{}`` for a project without box or segmentation categories.

    No ``path``: Ultralytics then reads the folders beside data.yaml (a relative ``path`` would be
    taken under its own datasets folder)."""
    folders = {subset: f"images/{subset}" for subset in snap.subsets()}
    train = folders.get("train") or folders.get(DEFAULT_SUBSET) or next(iter(folders.values()), "images/default")
    val = next((folders[s] for s in HELD_OUT_SUBSETS if s in folders), train)
    doc: dict[str, Any] = {"train": train, "val": val}
    if "test" in folders and folders["test"] != val:
        doc["test"] = folders["test"]
    doc["nc"] = len(names)
    doc["names"] = dict(enumerate(names))
    header = f"# VisionLoop export of {snap.title}\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _write_yolo(out: zipfile.ZipFile, snap: Snapshot, blobs: Iterator[bytes]) -> None:
    """YOLO detection, Ultralytics' layout: ``images/<subset>/``, ``labels/<subset>/``, data.yaml.

    Box categories give their boxes, segmentation categories their shapes' bounding boxes; crowd
    regions are no objects to detect and YOLO has no form for them, so they are left out.
    """
    kept = [cid for cid, c in snap.categories.items() if c.type in (BOX, SEGMENTATION)]
    indices = {cid: index for index, cid in enumerate(kept)}
    _folders(
        out, *(f"{kind}/{subset}" for subset in snap.subsets() or [DEFAULT_SUBSET] for kind in ("images", "labels"))
    )
    for image, data in zip(snap.images, blobs, strict=True):
        _write(out, f"images/{image.subset}/{_file_name(image)}", data, compress=False)
        lines = [
            _yolo_line(indices[item.category_id], box, image.width, image.height)
            for item in image.annotations
            if item.category_id in indices and not item.crowd and (box := shapes.shape_box(item.shape)) is not None
        ]
        _write(out, f"labels/{image.subset}/{image.sha256}.txt", "".join(f"{line}\n" for line in lines if line))
    _write(out, "data.yaml", _data_yaml(snap, [snap.categories[cid].name for cid in kept]))


def write_export(path: Path, snap: Snapshot, fmt: int, store: ObjectStore) -> tuple[str, int]:
    """Write the dataset zip to ``path``; returns its sha256 and size."""
    writer: Callable[[zipfile.ZipFile, Snapshot, Iterator[bytes]], None] = (
        _write_coco if format_name(fmt) == "coco" else _write_yolo
    )
    with zipfile.ZipFile(path, "w", allowZip64=True) as out:
        writer(out, snap, _blobs(store, snap.images))
    return hash_file(path)

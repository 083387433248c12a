"""The detector's side of the shared Triton model repository.

The converter writes the entries (``visionloop.lib.model_format.triton``): one per hub model
version and Triton format, named ``<organization>.<project>.<version>.<format>``, in the object
store Triton reads (a folder in embedded mode, an S3 prefix in a cluster). The detector only asks
Triton, through its repository API, which entries exist and loads the one for the version it
follows: ``triton_onnx`` first (Triton's onnxruntime backend, on GPUs), then ``triton_python``
(the python backend, on a CPU-only Triton). A model the converter did not publish (a static
``DETECTOR_MODEL_PATHS`` model, a version not converted yet) still gets a python-backend entry
written by the detector into ``TRITON_MODEL_REPOSITORY``, with the converter's writer.

Entries the detector writes are named after their content (``<name>.<digest>``), so, like the
converter's, they never change once written: detectors serving the same files share one entry,
and two versions never overwrite each other. Each appears whole (written in a staging folder,
then renamed into place) and carries a marker file, so only those entries are ever deleted
again. The folder ``.visionloop`` beside the entries holds the staging area and the leases
(``triton_leases``); Triton lists it in its repository index as a model it is never asked to load.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from visionloop.common.v1 import model_pb2
from visionloop.lib.model_format.triton import (
    ONNX,
    PYTHON,
    EntryOptions,
    TensorSpec,
    entry_files,
    entry_name,
    write_entry,
    write_python_backend_entry,
)

PREFERRED_FORMATS = (ONNX, PYTHON)  # the GPU entry when this Triton can load it, else the CPU one
STATE = ".visionloop"  # leases, staging and removal area inside the repository folder
MARKER = ".written-by-detector"  # in every entry the detector wrote (and may therefore delete)
CONFIG = "config.pbtxt"
DIGEST_HEX = 12

__all__ = [
    "PREFERRED_FORMATS",
    "PYTHON",
    "EntryOptions",
    "TensorSpec",
    "ensure_entry",
    "entry_digest",
    "entry_files",
    "published_entries",
    "remove_written_entry",
    "write_python_backend_entry",
]


def published_entries(info: model_pb2.ModelInfo, available: set[str]) -> list[str]:
    """The converter's entries for the hub version in ``info`` that ``available`` (the repository
    index) holds, in the order to try them; empty for models that did not come from a hub."""
    if not (info.organization and info.project and info.version):
        return []
    names = [entry_name(info.organization, info.project, info.version, fmt) for fmt in PREFERRED_FORMATS]
    return [name for name in names if name in available]


def entry_digest(files: dict[str, Path | bytes]) -> str:
    """A short hex digest of an entry's files (path and content of each; blocking, reads the weights)."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        digest.update(relative.encode() + b"\0")
        content = files[relative]
        if isinstance(content, Path):
            with content.open("rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
        else:
            digest.update(content)
        digest.update(b"\0")
    return digest.hexdigest()[:DIGEST_HEX]


def _set_aside(repository: Path, folder: Path) -> None:
    """Move ``folder`` out of Triton's sight at once (one rename), then delete it."""
    trash = repository / STATE / "trash" / f"{folder.name}-{uuid.uuid4().hex[:8]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def ensure_entry(repository: Path, name: str, files: dict[str, Path | bytes]) -> bool:
    """Put the entry ``name`` with ``files`` into the repository unless it is there (blocking);
    True when this call wrote it. Written whole or not at all: staged, then renamed into place."""
    target = repository / name
    if (target / CONFIG).is_file():
        return False
    if target.exists():  # a leftover without its config (an interrupted older writer): not an entry
        _set_aside(repository, target)
    staging = repository / STATE / "staging" / f"{name}-{uuid.uuid4().hex[:8]}"
    try:
        write_entry(staging, {**files, MARKER: b""})
        os.rename(staging, target)
    except OSError:
        if (target / CONFIG).is_file():
            return False  # another detector put the same entry in place first
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def remove_written_entry(repository: Path, name: str) -> bool:
    """Delete the entry ``name`` if the detector wrote it (blocking); the converter's stay."""
    target = repository / name
    if not (target / MARKER).is_file():
        return False
    _set_aside(repository, target)
    return True

"""Serving a detector model folder on Triton: find or write its repository entry, load it, wrap it.

Triton runs with explicit model control. A hub model version the converter published as a Triton
entry is loaded from the repository by its name (``triton_repository.published_entries``): the
converter's ``<organization>.<project>.<version>.<format>`` entries never change once written,
so following a new version loads a new name and retiring the old model unloads the old one.

Any other model (static ``DETECTOR_MODEL_PATHS`` models, a version the converter has not
converted) gets a python-backend entry the detector writes itself into the repository folder it
shares with Triton (``TRITON_MODEL_REPOSITORY``: the folder's ONNX file run by ONNX Runtime inside
Triton). How names and versions map for those (the detector's model name and model.json version):

- Triton model name: the detector's model name when it is made of ``A-Z a-z 0-9 _ - .`` and does
  not start with a dot; otherwise every other character becomes ``_`` and ``-`` plus the first 8
  hex digits of the name's SHA-256 is appended, so two different names never share an entry
  (``weeds/v2`` -> ``weeds_v2-<hash>``). ``triton_model_name`` is that mapping.
- Triton version: model.json ``version`` when it is a positive integer ("3" -> 3), else 1 (hub
  versions such as "1.3" are not integers; the detector reports the model.json version in every
  answer either way, the Triton version only names the folder). The entry keeps exactly this one
  version: other version folders are removed before loading, so Triton's default "latest" policy
  serves what was written, also when a swap goes back to a lower number.

A swap to a new version of the same model reloads the same Triton entry in place: Triton loads the
new files and switches over without refusing requests, and the model being replaced must then not
unload the entry on its way out. ``SharedTritonBackend`` counts the detector's holders of each
entry and unloads only when the last one closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from visionloop.common.v1 import model_pb2
from visionloop.detector.admission import DEFAULT_POLICY, AdmissionPolicy
from visionloop.detector.backends.base import BackendError
from visionloop.detector.backends.triton import TritonBackend, repository_models
from visionloop.detector.models import ServedModel, read_model_folder, served
from visionloop.detector.triton_repository import published_entries, write_python_backend_entry
from visionloop.runtime.logging import get_logger

log = get_logger(__name__)

_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]*")
_VERSION = re.compile(r"[0-9]+")
MAX_TRITON_VERSION = 2**63 - 1  # Triton versions are int64
# The detector's MicroBatcher already waits DETECTOR_MAX_BATCH_WAIT_MS to fill a batch; Triton's
# dynamic batcher still merges whatever queues up while the model instance is busy, without waiting.
QUEUE_DELAY_US = 0


def triton_model_name(name: str) -> str:
    """The Triton model name (a repository folder name) for the detector's model ``name``."""
    if _SAFE_NAME.fullmatch(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_\-.]", "_", name).lstrip(".") or "model"
    return f"{cleaned}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def triton_version(version: str) -> int:
    """The Triton version for a model.json version: the version itself if it is a positive integer, else 1."""
    if _VERSION.fullmatch(version) and 0 < int(version) <= MAX_TRITON_VERSION:
        return int(version)
    return 1


def _output_dims(weights: Path, output_names: list[str]) -> list[list[int]]:
    """Each named output's shape without the batch dimension, -1 where the ONNX graph leaves it free."""
    import onnx

    try:
        graph = onnx.load(str(weights), load_external_data=False).graph
    except Exception as error:  # onnx raises DecodeError and friends for broken files
        raise BackendError(f"{weights.name} is not a readable ONNX model: {error}") from None
    shapes = {
        output.name: [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in shape.dim]
        for output in graph.output
        for shape in [output.type.tensor_type.shape]
    }
    missing = [name for name in output_names if name not in shapes]
    if missing:
        raise BackendError(f"model has no output {missing[0]!r} (outputs: {', '.join(sorted(shapes)) or 'none'})")
    for name in output_names:
        if len(shapes[name]) < 1:
            # Triton's config needs every output's rank; a graph without output shapes cannot say
            raise BackendError(f"output {name!r} declares no shape (batch first) in the ONNX graph")
    return [shapes[name][1:] for name in output_names]


def _write_entry(
    repository: Path,
    triton_name: str,
    version: int,
    weights: Path,
    input_name: str,
    input_dims: tuple[int, int, int],
    output_names: list[str],
    max_batch: int,
) -> None:
    output_dims = _output_dims(weights, output_names)
    entry = write_python_backend_entry(
        repository,
        triton_name,
        weights,
        input_name,
        input_dims,
        output_names,
        output_dims,
        max_batch_size=max_batch,
        version=version,
        max_queue_delay_us=QUEUE_DELAY_US,
    )
    # One version per entry: Triton's "latest" policy must serve the version just written.
    for other in entry.iterdir():
        if other.is_dir() and other.name.isdigit() and other.name != str(version):
            shutil.rmtree(other, ignore_errors=True)


@dataclass(frozen=True)
class _Key:
    url: str
    model: str


_holders: dict[_Key, int] = {}


class SharedTritonBackend:
    """A TritonBackend for one ServedModel; Triton unloads the entry when its last holder closes."""

    kind = "triton"

    def __init__(self, backend: TritonBackend) -> None:
        self.triton = backend
        self.max_batch_size = backend.max_batch_size
        self.max_in_flight = backend.max_in_flight
        self._key = _Key(backend.url, backend.model_name)
        self._closed = False
        _holders[self._key] = _holders.get(self._key, 0) + 1

    @property
    def model_name(self) -> str:
        return self.triton.model_name

    async def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return await self.triton.infer(batch)

    async def infer_frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return await self.triton.infer_frames(frames)

    def run_blocking(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.triton.run_blocking(frames)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        left = _holders.get(self._key, 1) - 1
        if left > 0:
            _holders[self._key] = left
            # A newer load of the same entry serves on: close the connections, leave the model.
            await self.triton.close(unload=False)
            return
        _holders.pop(self._key, None)
        await self.triton.close()


async def _load_published(
    url: str,
    info: model_pb2.ModelInfo,
    input_name: str,
    output_names: list[str],
    max_batch: int,
    shared_memory: str,
    shared_memory_owner: str,
) -> TritonBackend | None:
    """The converter's entry for this hub version, loaded; None when the repository has none that loads."""
    candidates = published_entries(info, await repository_models(url)) if info.organization else []
    for entry in candidates:
        try:
            return await TritonBackend.load(
                url,
                entry,
                input_name=input_name,
                output_names=output_names,
                max_batch_size=max_batch,
                shared_memory=shared_memory,
                shared_memory_owner=shared_memory_owner,
            )
        except BackendError as error:  # e.g. the GPU entry on a CPU-only Triton: try the next
            log.warning("published Triton entry does not load here", triton_model=entry, reason=str(error))
    return None


async def open_triton_model(
    name: str,
    folder: Path,
    triton_url: str,
    repository: Path,
    max_batch: int = 16,
    max_wait: float = 0.002,
    shared_memory: str = "auto",
    shared_memory_owner: str = "",
    admission: AdmissionPolicy = DEFAULT_POLICY,
) -> ServedModel:
    """Serve a model folder on the Triton at ``triton_url``.

    Loads the converter's entry for the folder's hub version when Triton's repository has one;
    otherwise writes (or refreshes) the entry ``repository/<triton_model_name(name)>/<version>``
    and loads that. Returns the ServedModel; BackendError saying what went wrong.
    """
    info, weights = await asyncio.to_thread(read_model_folder, folder)
    input_name = info.input.tensor_name or "images"
    output_names = list(info.output.tensor_names)
    published = await _load_published(
        triton_url, info, input_name, output_names, max_batch, shared_memory, shared_memory_owner
    )
    if published is not None:
        log.info("triton model loaded", model=name, triton_model=published.model_name, url=triton_url, published=True)
        return served(name, info, SharedTritonBackend(published), max_wait, admission)
    if not info.version:  # a model brought from elsewhere: detections still name what produced them
        info.version = "local"
    triton_name = triton_model_name(name)
    version = triton_version(info.version)
    try:
        await asyncio.to_thread(
            _write_entry,
            repository,
            triton_name,
            version,
            weights,
            input_name,
            (3, info.input.height, info.input.width),
            output_names,
            max_batch,
        )
    except OSError as error:
        raise BackendError(f"cannot write Triton model repository entry {repository / triton_name}: {error}") from None
    backend = await TritonBackend.load(
        triton_url,
        triton_name,
        input_name=input_name,
        output_names=output_names,
        max_batch_size=max_batch,
        shared_memory=shared_memory,
        shared_memory_owner=shared_memory_owner,
    )
    log.info("triton model loaded", model=name, triton_model=triton_name, triton_version=version, url=triton_url)
    return served(name, info, SharedTritonBackend(backend), max_wait, admission)

"""Serving a detector model folder on Triton: find or write its repository entry, load it, wrap it.

Triton runs with explicit model control and may be shared by many detectors (and Triton replicas
behind one Service). A hub model version the converter published as a Triton entry is loaded from
the repository by its name (``triton_repository.published_entries``); any other model (static
``DETECTOR_MODEL_PATHS`` models, a version the converter has not converted) gets a python-backend
entry the detector writes itself into the repository folder it shares with Triton
(``TRITON_MODEL_REPOSITORY``: the folder's ONNX file run by ONNX Runtime inside Triton).

Names and versions of the detector's own entries:

- Triton model name: ``<base>.<digest>``, the digest of the entry's files
  (``triton_repository.ensure_entry``): detectors serving the same files share one entry, a new
  version is a new entry (loaded beside the old one, as for published versions) and no entry ever
  changes once written. ``<base>`` is the detector's model name when it is made of
  ``A-Z a-z 0-9 _ - .`` and does not start with a dot; otherwise every other character becomes
  ``_`` and ``-`` plus the first 8 hex digits of the name's SHA-256 is appended, so two different
  names never share a base (``weeds/v2`` -> ``weeds_v2-<hash>``). ``triton_model_name`` is that mapping.
- Triton version: model.json ``version`` when it is a positive integer ("3" -> 3), else 1 (hub
  versions such as "1.3" are not integers; the detector reports the model.json version in every
  answer either way, the Triton version only names the folder and Triton's metrics).

Who may unload an entry is decided by leases (``triton_leases``): closing a model drops this
process's hold, and Triton unloads the entry only once no detector holds it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

from visionloop.common.v1 import model_pb2
from visionloop.runtime.logging import get_logger
from visionloop.server.detector.admission import DEFAULT_POLICY, AdmissionPolicy
from visionloop.server.detector.backends.base import BackendError
from visionloop.server.detector.backends.triton import TritonBackend, repository_models
from visionloop.server.detector.models import ServedModel, read_model_folder, served
from visionloop.server.detector.triton_leases import EntryLeases, entry_leases
from visionloop.server.detector.triton_repository import (
    PYTHON,
    EntryOptions,
    TensorSpec,
    ensure_entry,
    entry_digest,
    entry_files,
    published_entries,
)

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


def _entry_files(
    base: str,
    version: int,
    weights: Path,
    input_name: str,
    input_dims: tuple[int, int, int],
    output_names: list[str],
    max_batch: int,
) -> tuple[str, dict[str, Path | bytes]]:
    """The name (``<base>.<digest>``) and files of the detector's python-backend entry (blocking)."""
    inputs = [TensorSpec(input_name, input_dims)]
    output_dims = _output_dims(weights, output_names)
    outputs = [TensorSpec(name, dims) for name, dims in zip(output_names, output_dims, strict=True)]
    options = EntryOptions(max_batch_size=max_batch, max_queue_delay_us=QUEUE_DELAY_US)
    digest = entry_digest(entry_files(PYTHON, base, weights, inputs, outputs, options, version))
    name = f"{base}.{digest}"
    return name, entry_files(PYTHON, name, weights, inputs, outputs, options, version)


class SharedTritonBackend:
    """A TritonBackend for one ServedModel, holding a lease on its entry until closed."""

    kind = "triton"

    def __init__(self, backend: TritonBackend, leases: EntryLeases) -> None:
        self.triton = backend
        self.max_batch_size = backend.max_batch_size
        self.max_in_flight = backend.max_in_flight
        self._leases = leases
        self._closed = False

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
        try:
            await self.triton.close(unload=False)  # the leases decide whether Triton unloads it
        finally:
            await self._leases.release(self.triton.model_name)


Load = Callable[[str], Awaitable[TritonBackend]]  # TritonBackend.load with everything but the entry


async def _load_held(
    leases: EntryLeases, load: Load, entry: str, restore: Callable[[], bool] | None = None
) -> TritonBackend:
    """Hold a lease on ``entry``, then load it; ``restore`` (blocking) puts the detector's own entry
    in place, before the load and again when a reaper removed it just before."""
    try:
        await leases.acquire(entry)
    except OSError as error:
        raise BackendError(f"cannot write a Triton lease in {leases.folder}: {error}") from None
    try:
        if restore is not None:
            await asyncio.to_thread(restore)
        try:
            backend = await load(entry)
        except BackendError:
            if restore is None or not await asyncio.to_thread(restore):
                raise
            backend = await load(entry)  # its files had gone between writing and loading: back now
    except OSError as error:
        await leases.release(entry)
        raise BackendError(f"cannot write Triton model repository entry {leases.repository / entry}: {error}") from None
    except BaseException:
        await leases.release(entry)
        raise
    backend.restore = restore
    return backend


async def _load_published(leases: EntryLeases, load: Load, info: model_pb2.ModelInfo) -> TritonBackend | None:
    """The converter's entry for this hub version, loaded; None when the repository has none that loads."""
    candidates = published_entries(info, await repository_models(leases.url)) if info.organization else []
    for entry in candidates:
        try:
            return await _load_held(leases, load, entry)
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
    lease_seconds: float = 60.0,
    admission: AdmissionPolicy = DEFAULT_POLICY,
) -> ServedModel:
    """Serve a model folder on the Triton at ``triton_url``.

    Loads the converter's entry for the folder's hub version when Triton's repository has one;
    otherwise puts the entry ``repository/<triton_model_name(name)>.<digest>`` in place (unless a
    detector already did) and loads that. Either way under a lease of ``lease_seconds``
    (``triton_leases``). Returns the ServedModel; BackendError saying what went wrong.
    """
    info, weights = await asyncio.to_thread(read_model_folder, folder)
    if info.input.batch_size > 1:
        raise BackendError(
            f"the graph takes batches of exactly {info.input.batch_size}; Triton sends any batch up to its "
            "max_batch_size: export with a dynamic batch (dynamic=True) or serve it on onnxruntime"
        )
    if info.input.batch_size == 1:  # a static export: one image per inference, Triton queues the rest
        max_batch = 1
    input_name = info.input.tensor_name or "images"
    output_names = list(info.output.tensor_names)
    leases = entry_leases(repository, triton_url, lease_seconds)
    load: Load = functools.partial(
        TritonBackend.load,
        triton_url,
        input_name=input_name,
        output_names=output_names,
        max_batch_size=max_batch,
        shared_memory=shared_memory,
        shared_memory_owner=shared_memory_owner,
        unload_on_failure=False,  # others may serve it: the leases decide
    )
    published = await _load_published(leases, load, info)
    if published is not None:
        log.info("triton model loaded", model=name, triton_model=published.model_name, url=triton_url, published=True)
        return served(name, info, SharedTritonBackend(published, leases), max_wait, admission)
    if not info.version:  # a model brought from elsewhere: detections still name what produced them
        info.version = "local"
    version = triton_version(info.version)
    # A graph of any size gets each frame's stride-aligned rectangle: free height and width.
    dims = (3, -1, -1) if info.input.stride else (3, info.input.height, info.input.width)
    try:
        entry, files = await asyncio.to_thread(
            _entry_files, triton_model_name(name), version, weights, input_name, dims, output_names, max_batch
        )
    except OSError as error:
        raise BackendError(f"cannot read {weights}: {error}") from None
    backend = await _load_held(leases, load, entry, functools.partial(ensure_entry, repository, entry, files))
    log.info("triton model loaded", model=name, triton_model=entry, triton_version=version, url=triton_url)
    return served(name, info, SharedTritonBackend(backend, leases), max_wait, admission)

"""Triton Inference Server over gRPC (asyncio), with explicit model control.

``TritonBackend.load`` asks the server to load the model, waits until it is ready and checks the
tensor names against the served configuration; ``close`` unloads it again. ``repository_models``
lists what the server's model repository holds. Every request carries
the whole batch; the server's dynamic batcher may merge it with other clients' requests.

A model can disappear from under a backend: another client unloaded it, the Triton pod restarted,
or the connection reached another replica that never loaded it. An inference that finds its model
missing loads it again through the same connection (so on the same Triton instance) and is tried
once more; every other failure is ``BackendUnavailable`` (robots see UNAVAILABLE and retry).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, cast

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from visionloop.runtime.logging import get_logger
from visionloop.runtime.threads import named_executor
from visionloop.server.detector.backends.base import BackendError, BackendUnavailable, stack
from visionloop.server.detector.backends.triton_shm import InputRegions, is_loopback

log = get_logger(__name__)

# Pings while a call is open notice a dead server or a dropped connection in about 80 s. No
# pings on idle connections: Triton's default policy (keepalive without calls not permitted)
# answers those with GOAWAY "too_many_pings"; `http2_max_pings_without_data=0` lets one slow call
# keep pinging. The channel reconnects by itself between calls.
KEEPALIVE = grpcclient.KeepAliveOptions(
    keepalive_time_ms=60_000,
    keepalive_timeout_ms=20_000,
    keepalive_permit_without_calls=False,
    http2_max_pings_without_data=0,
)
RPC_TIMEOUT_S = 10.0  # health, metadata and repository calls (loading has its own limit)
READY_POLL_S = 0.1
# How Triton says a request's model is not loaded there: "Request for unknown model: 'x' is not
# found" / "... has no available versions" (NOT_FOUND on 2.x servers, INTERNAL on some older ones).
_MISSING = ("unknown model", "no available versions", "is not found")


class TritonBackend:
    kind = "triton"
    max_in_flight = 3  # batches sent before the first answers: hides the round trip to Triton

    def __init__(
        self,
        client: aioclient.InferenceServerClient,
        url: str,
        model_name: str,
        version: str,
        input_name: str,
        input_shape: Sequence[int],
        output_names: Sequence[str],
        max_batch_size: int,
        infer_timeout: float,
        regions: InputRegions | None = None,
    ) -> None:
        self._client = client
        self.regions = regions  # inputs through shared memory when Triton runs on this machine
        self.url = url
        self.model_name = model_name
        self.version = version
        self.input_name = input_name
        self.input_shape = list(input_shape)  # batch dimension first; -1 for free dimensions
        self.output_names = list(output_names)
        self.max_batch_size = max_batch_size
        self._infer_timeout = infer_timeout
        self.load_timeout = 120.0
        self._closed = False
        # Run (blocking) before the model is loaded again after it went missing: puts the entry's
        # files back if a clean-up removed them (the detector's own entries), None for others'.
        self.restore: Callable[[], object] | None = None
        self._reload_lock = threading.Lock()
        self._loads = 0  # loads since start; a thread that saw a miss reloads only if nobody did since
        # Inference goes through the blocking client on worker threads: building and serializing a
        # request of tens of MB would otherwise stall the event loop, and several threads keep
        # several batches in flight, as Triton's own dynamic batcher expects.
        self._infer_client: grpcclient.InferenceServerClient | None = None
        self._executor = named_executor(self.max_in_flight, "triton")

    @classmethod
    async def load(
        cls,
        url: str,
        model_name: str,
        version: str = "",
        input_name: str = "images",
        output_names: Sequence[str] = ("output0",),
        max_batch_size: int = 16,
        load_timeout: float = 120.0,
        infer_timeout: float = 60.0,
        shared_memory: str = "auto",
        shared_memory_owner: str = "",
        unload_on_failure: bool = True,
    ) -> TritonBackend:
        """Load ``model_name`` on the Triton at ``url`` (host:port of its gRPC endpoint).

        ``version`` "" means the version(s) the model's version policy serves (the latest by
        default). ``shared_memory``: "on" sends inputs through system shared memory, "off" inside
        the requests, "auto" through shared memory when ``url`` is a loopback address and the server
        accepts the regions. BackendError when the server is unreachable, the model does not load
        within ``load_timeout`` seconds (with Triton's reason), its tensors do not match, or
        shared memory is "on" and the server cannot use it. ``unload_on_failure``: unload the model
        again when a check fails (False when others may serve it: their leases decide).
        """
        client = aioclient.InferenceServerClient(url, keepalive_options=KEEPALIVE)
        try:
            await _check_live(client, url)
            await _load_and_wait(client, model_name, version, load_timeout)
            try:
                input_shape, served_batch = await _check_tensors(client, model_name, version, input_name, output_names)
            except BackendError:
                if unload_on_failure:
                    await _unload_quietly(client, model_name)
                raise
        except BaseException:
            await client.close()
            raise
        if served_batch > 0:
            max_batch_size = min(max_batch_size, served_batch)
        regions = await _input_regions(
            client, url, model_name, shared_memory, input_shape, max_batch_size, shared_memory_owner, unload_on_failure
        )
        backend = cls(
            client,
            url,
            model_name,
            version,
            input_name,
            input_shape,
            output_names,
            max_batch_size,
            infer_timeout,
            regions,
        )
        backend.load_timeout = load_timeout
        return backend

    async def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        # a batch is the sequence of its frames (len, indexing, np.stack), which numpy's types do not declare
        return await self.infer_frames(cast(Sequence[np.ndarray], batch))

    async def infer_frames(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Like ``infer`` for per-frame CHW tensors (or a batch): they are stacked once, into the
        shared-memory region when there is one, instead of into a batch that is then copied there."""
        if self._closed:
            raise BackendUnavailable(f"Triton backend for {self.model_name!r} is closed")
        self._check_shape((len(frames), *frames[0].shape))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._infer_blocking, frames)

    def run_blocking(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        """``infer_frames`` on the calling (worker) thread: the detector's lone-frame path."""
        if self._closed:
            raise BackendUnavailable(f"Triton backend for {self.model_name!r} is closed")
        self._check_shape((len(frames), *frames[0].shape))
        return self._infer_blocking(frames)

    def _infer_blocking(self, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self._infer_client is None:
            self._infer_client = grpcclient.InferenceServerClient(self.url, keepalive_options=KEEPALIVE)
        loads = self._loads
        try:
            return self._infer_once(self._infer_client, frames)
        except InferenceServerException as error:
            if not model_missing(error):
                raise BackendUnavailable(f"Triton inference on {self.model_name!r} failed: {_reason(error)}") from None
            log.warning("triton model missing; loading it again", triton_model=self.model_name, reason=_reason(error))
        self._reload(self._infer_client, loads)
        try:
            return self._infer_once(self._infer_client, frames)
        except InferenceServerException as error:
            raise BackendUnavailable(f"Triton inference on {self.model_name!r} failed: {_reason(error)}") from None

    def _infer_once(self, client: grpcclient.InferenceServerClient, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        shape = [len(frames), *frames[0].shape]
        request_input = grpcclient.InferInput(self.input_name, shape, "FP32")
        outputs = [grpcclient.InferRequestedOutput(name) for name in self.output_names]
        region = self.regions.take() if self.regions is not None else None
        try:
            if region is None:
                batch = frames if isinstance(frames, np.ndarray) else stack(frames)
                request_input.set_data_from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            else:
                request_input.set_shared_memory(region.name, region.write(frames))
            result = client.infer(
                self.model_name,
                [request_input],
                model_version=self.version,
                outputs=outputs,
                client_timeout=self._infer_timeout,
            )
        finally:
            if region is not None and self.regions is not None:
                self.regions.give(region)
        return [self._output(result, name, len(frames)) for name in self.output_names]

    def _reload(self, client: grpcclient.InferenceServerClient, seen: int) -> None:
        """Load the model again through the inference connection (the Triton instance that missed it);
        one thread loads, the others that saw the same miss wait for it."""
        with self._reload_lock:
            if self._loads != seen:
                return  # loaded again since this thread's attempt
            try:
                if self.restore is not None:
                    self.restore()
                client.load_model(self.model_name, client_timeout=self.load_timeout)
            except (InferenceServerException, OSError) as error:
                reason = _reason(error) if isinstance(error, InferenceServerException) else str(error)
                message = f"Triton lost model {self.model_name!r} and cannot load it again: {reason}"
                raise BackendUnavailable(message) from None
            self._loads += 1
        log.info("triton model loaded again", triton_model=self.model_name, url=self.url)

    async def close(self, unload: bool = True) -> None:
        """Close the connections, unloading the model first unless another holder still serves it;
        safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if unload:
                await self._client.unload_model(self.model_name, client_timeout=RPC_TIMEOUT_S)
        except InferenceServerException as error:
            raise BackendError(f"Triton could not unload {self.model_name!r}: {_reason(error)}") from None
        finally:
            # Running calls finish first: a region must not be unlinked while a request reads it.
            await asyncio.to_thread(self._executor.shutdown, wait=True)
            if self.regions is not None:
                await self.regions.close(self._client)
            await self._client.close()
            if self._infer_client is not None:
                self._infer_client.close()

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        expected = self.input_shape
        matches = len(shape) == len(expected) and all(
            want in (-1, got) for want, got in zip(expected, shape, strict=True)
        )
        if not matches:
            wanted = "x".join("N" if i == 0 else ("?" if d == -1 else str(d)) for i, d in enumerate(expected))
            raise BackendError(
                f"batch shape {'x'.join(map(str, shape))} does not match {self.model_name!r} input "
                f"{self.input_name!r} ({wanted})"
            )
        if not 1 <= shape[0] <= self.max_batch_size:
            raise BackendError(f"batch of {shape[0]} images; {self.model_name!r} takes 1 to {self.max_batch_size}")

    def _output(self, result: grpcclient.InferResult, name: str, batch_size: int) -> np.ndarray:
        array = result.as_numpy(name)
        if array is None or array.ndim == 0 or array.shape[0] != batch_size:
            shape = "nothing" if array is None else "x".join(map(str, array.shape))
            raise BackendError(f"Triton returned {shape} for output {name!r}, expected {batch_size} first")
        # as_numpy views the response's bytes (read-only); callers may post-process in place, as
        # they can with ONNX Runtime's outputs. Detector outputs are small next to the input batch.
        return array.copy()


async def repository_models(url: str) -> set[str]:
    """Names of the models in the repository of the Triton at ``url`` (loaded or not): its repository
    index, so the detector sees what the converter published wherever the repository lives."""
    client = aioclient.InferenceServerClient(url, keepalive_options=KEEPALIVE)
    try:
        index = await client.get_model_repository_index(as_json=True, client_timeout=RPC_TIMEOUT_S)
    except InferenceServerException as error:
        raise BackendError(f"Triton at {url} cannot list its model repository: {_reason(error)}") from None
    finally:
        await client.close()
    return {model["name"] for model in index.get("models", []) if "name" in model}


def model_missing(error: InferenceServerException) -> bool:
    """Whether Triton refused a request because the model is not loaded there."""
    return any(text in _reason(error) for text in _MISSING)


def instance_urls(url: str) -> list[str]:
    """Every Triton instance behind ``url`` (blocking): one host:port per address its host resolves
    to, so a headless Service names each replica; ``url`` itself when the name does not resolve."""
    host, _, port = url.rpartition(":")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return [url]
    addresses = dict.fromkeys(str(info[4][0]) for info in infos)
    return [f"[{address}]:{port}" if ":" in address else f"{address}:{port}" for address in addresses] or [url]


async def unload_everywhere(url: str, model_name: str) -> None:
    """Unload ``model_name`` on every Triton instance behind ``url``; failures are logged, not raised
    (an instance that is gone holds nothing, one that refused keeps the model until the next try)."""
    for instance in await asyncio.to_thread(instance_urls, url):
        client = aioclient.InferenceServerClient(instance, keepalive_options=KEEPALIVE)
        try:
            await client.unload_model(model_name, client_timeout=RPC_TIMEOUT_S)
        except InferenceServerException as error:
            log.warning("triton unload failed", triton_model=model_name, url=instance, reason=_reason(error))
        finally:
            await client.close()


async def _check_live(client: aioclient.InferenceServerClient, url: str) -> None:
    try:
        live = await client.is_server_live(client_timeout=RPC_TIMEOUT_S)
    except InferenceServerException as error:
        raise BackendError(f"Triton at {url} is unreachable: {_reason(error)}") from None
    if not live:
        raise BackendError(f"Triton at {url} answers but is not live")


async def _load_and_wait(
    client: aioclient.InferenceServerClient, model_name: str, version: str, load_timeout: float
) -> None:
    """Explicit model control: the load RPC returns once the load has succeeded or failed."""
    deadline = time.monotonic() + load_timeout
    try:
        await client.load_model(model_name, client_timeout=load_timeout)
    except InferenceServerException as error:
        raise BackendError(f"Triton failed to load model {model_name!r}: {_reason(error)}") from None
    # Readiness can trail the load RPC (other versions, strict readiness): poll until the deadline.
    while True:
        try:
            if await client.is_model_ready(model_name, version, client_timeout=RPC_TIMEOUT_S):
                return
        except InferenceServerException as error:
            raise BackendError(f"Triton lost model {model_name!r} while loading: {_reason(error)}") from None
        if time.monotonic() >= deadline:
            if version:
                raise BackendError(
                    f"Triton model {model_name!r} version {version} was not ready within {load_timeout:g} s "
                    "(does the model's version_policy serve it?)"
                )
            raise BackendError(f"Triton model {model_name!r} was not ready within {load_timeout:g} s")
        await asyncio.sleep(READY_POLL_S)


async def _check_tensors(
    client: aioclient.InferenceServerClient,
    model_name: str,
    version: str,
    input_name: str,
    output_names: Sequence[str],
) -> tuple[list[int], int]:
    """Return the input's full shape (batch first) and the served max_batch_size."""
    try:
        config = await client.get_model_config(model_name, version, as_json=True, client_timeout=RPC_TIMEOUT_S)
        metadata = await client.get_model_metadata(model_name, version, as_json=True, client_timeout=RPC_TIMEOUT_S)
    except InferenceServerException as error:
        raise BackendError(f"Triton cannot describe model {model_name!r}: {_reason(error)}") from None
    served_batch = int(config["config"].get("max_batch_size", 0))
    inputs = {tensor["name"]: tensor for tensor in metadata.get("inputs", [])}
    outputs = {tensor["name"] for tensor in metadata.get("outputs", [])}
    if input_name not in inputs:
        raise BackendError(f"Triton model {model_name!r} has no input {input_name!r} (inputs: {_names(inputs)})")
    missing = [name for name in output_names if name not in outputs]
    if missing:
        raise BackendError(f"Triton model {model_name!r} has no output {missing[0]!r} (outputs: {_names(outputs)})")
    datatype = inputs[input_name].get("datatype")
    if datatype != "FP32":
        raise BackendError(f"Triton model {model_name!r} input {input_name!r} is {datatype}, not FP32")
    # Metadata shapes already include the batch dimension (-1) when max_batch_size > 0.
    return [int(d) for d in inputs[input_name]["shape"]], served_batch


async def _input_regions(
    client: aioclient.InferenceServerClient,
    url: str,
    model_name: str,
    mode: str,
    input_shape: Sequence[int],
    max_batch_size: int,
    owner: str,
    unload_on_failure: bool,
) -> InputRegions | None:
    """Shared-memory regions for this model's inputs, or None to send them inside the requests."""
    if mode == "off" or (mode == "auto" and not is_loopback(url)):
        return None
    if any(d < 0 for d in input_shape[1:]):
        if mode == "on":
            if unload_on_failure:
                await _unload_quietly(client, model_name)
            raise BackendError(f"Triton model {model_name!r} has free input dimensions; shared memory needs fixed ones")
        return None
    byte_size = max_batch_size * int(np.prod(input_shape[1:])) * np.dtype(np.float32).itemsize
    try:
        return await InputRegions.register(client, TritonBackend.max_in_flight, byte_size, owner)
    except (InferenceServerException, OSError) as error:
        reason = _reason(error) if isinstance(error, InferenceServerException) else str(error)
        if mode == "on":
            if unload_on_failure:
                await _unload_quietly(client, model_name)
            raise BackendError(f"Triton at {url} cannot use system shared memory: {reason}") from None
        log.warning("triton shared memory unavailable; inputs go inside the requests", url=url, reason=reason)
        return None


async def _unload_quietly(client: aioclient.InferenceServerClient, model_name: str) -> None:
    with suppress(InferenceServerException):  # the error being raised says more than a failed clean-up
        await client.unload_model(model_name, client_timeout=RPC_TIMEOUT_S)


def _names(tensors: Any) -> str:
    return ", ".join(sorted(tensors)) or "none"


def _reason(error: InferenceServerException) -> str:
    return error.message() or str(error)

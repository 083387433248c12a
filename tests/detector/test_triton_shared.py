"""One real CPU ``tritonserver`` shared by several detectors: leases, reaping and models loaded again.

The scenario test runs real ``visionloop serve detector`` processes, as the chart's detector HPA in
front of one Triton does; the others drive the pieces in this process against the same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as aioclient

from tests.detector.conftest import IMAGE, OPEN_ADMISSION_ENV
from tests.detector.triton_server import TritonServer, TritonStartError
from tests.harness import ServiceProcess, serve
from visionloop.detector.v1 import detector_service_pb2 as pb
from visionloop.detector.v1 import detector_service_pb2_grpc
from visionloop.lib.archives import safe_extract
from visionloop.server.detector.backends.base import BackendUnavailable
from visionloop.server.detector.backends.triton import TritonBackend
from visionloop.server.detector.triton_leases import EntryLeases
from visionloop.server.detector.triton_models import open_triton_model
from visionloop.server.detector.triton_repository import (
    PYTHON,
    STATE,
    EntryOptions,
    TensorSpec,
    ensure_entry,
    entry_files,
    remove_written_entry,
    write_python_backend_entry,
)
from visionloop.testing.synthetic.models import CELL, yolov8_stub

WIDTH = HEIGHT = 320  # the stub zip's input size
LEASE_SECONDS = 3.0  # short, so that the killed detectors' leases expire within the test
DEADLINE_S = 60.0  # generous: a busy 2-core machine must not fail a test that is right


def start_triton(workdir: Path) -> TritonServer:
    server = TritonServer(workdir / "models", workdir)
    try:
        server.start()
    except TritonStartError as error:
        pytest.fail(str(error), pytrace=False)  # no Triton is a failure, never a skip
    return server


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = start_triton(tmp_path_factory.mktemp("triton-shared"))
    yield server
    server.stop()


def model_folder(stub_zip: Path, folder: Path, version: str = "") -> Path:
    safe_extract(stub_zip, folder)
    if version:
        manifest = folder / "model.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": version}))
    return folder


async def ready(triton: TritonServer, entry: str) -> bool:
    async with aioclient.InferenceServerClient(triton.grpc_url) as client:
        return bool(await client.is_model_ready(entry))


async def eventually(check: Callable[[], object], what: str, within: float = DEADLINE_S) -> None:
    """Await ``check()`` (sync or async) until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:g} s")
        await asyncio.sleep(0.1)


# --- leases and reloads, in this process --------------------------------------------------------


def stub_entry(repository: Path, onnx: Path, name: str) -> None:
    anchors = (WIDTH // CELL) * (HEIGHT // CELL)
    files = entry_files(
        PYTHON,
        name,
        onnx,
        [TensorSpec("images", (3, HEIGHT, WIDTH))],
        [TensorSpec("output0", (6, anchors))],
        EntryOptions(max_batch_size=4),
    )
    ensure_entry(repository, name, files)


@pytest.fixture(scope="module")
def onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return yolov8_stub(tmp_path_factory.mktemp("onnx") / "stub.onnx", WIDTH, HEIGHT)


async def test_an_entry_stays_loaded_until_its_last_holder_lets_go(triton: TritonServer, onnx: Path) -> None:
    stub_entry(triton.repository, onnx, "held-by-two")
    first = EntryLeases(triton.repository, triton.grpc_url, 60, holder="first")  # no lease expires here
    second = EntryLeases(triton.repository, triton.grpc_url, 60, holder="second")
    await first.acquire("held-by-two")
    await second.acquire("held-by-two")
    backend = await TritonBackend.load(triton.grpc_url, "held-by-two", unload_on_failure=False)
    try:
        await first.release("held-by-two")
        assert await ready(triton, "held-by-two")  # the other detector still holds it
        (output,) = await backend.infer(np.zeros((1, 3, HEIGHT, WIDTH), np.float32))
        assert output.shape[0] == 1
        await second.release("held-by-two")
        assert not await ready(triton, "held-by-two")  # the last holder unloads it
        assert not (triton.repository / "held-by-two").exists()  # and deletes the entry it wrote
        assert not (triton.repository / STATE / "leases" / "held-by-two").exists()
    finally:
        await backend.close(unload=False)


async def test_a_killed_holders_entry_is_unloaded_once_its_lease_expires(triton: TritonServer, onnx: Path) -> None:
    stub_entry(triton.repository, onnx, "orphan")
    killed = EntryLeases(triton.repository, triton.grpc_url, LEASE_SECONDS, holder="killed")
    reaper = EntryLeases(triton.repository, triton.grpc_url, LEASE_SECONDS, holder="reaper")
    await killed.acquire("orphan")
    backend = await TritonBackend.load(triton.grpc_url, "orphan", unload_on_failure=False)
    await backend.close(unload=False)
    await killed.stop()  # no release, no more renewals: what kill -9 leaves behind
    lease = triton.repository / STATE / "leases" / "orphan" / "killed"
    assert lease.is_file()
    if time.time() - lease.stat().st_mtime < LEASE_SECONDS / 2:  # checkable only while the lease is fresh
        assert await reaper.reap() == []
        assert await ready(triton, "orphan")
    await eventually(reaper.reap, "the expired entry reaped")
    assert not await ready(triton, "orphan")
    assert not (triton.repository / "orphan").exists()
    assert not lease.exists()


async def test_a_model_unloaded_behind_the_detectors_back_is_loaded_again(
    triton: TritonServer, stub_zip: Path, tmp_path: Path
) -> None:
    # Another detector's reaper (or a Triton restart) took the model and its files: the next
    # inference puts the detector's entry back, loads it through its own connection and answers.
    folder = model_folder(stub_zip, tmp_path / "model")
    model = await open_triton_model("stub", folder, triton.grpc_url, triton.repository, lease_seconds=LEASE_SECONDS)
    entry = model.backend.model_name  # type: ignore[attr-defined]
    try:
        batch = np.random.default_rng(0).random((2, 3, HEIGHT, WIDTH), dtype=np.float32)
        (before,) = await model.backend.infer(batch)
        async with aioclient.InferenceServerClient(triton.grpc_url) as client:
            await client.unload_model(entry)
        assert remove_written_entry(triton.repository, entry)
        (after,) = await model.backend.infer(batch)
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
        assert await ready(triton, entry)
        assert (triton.repository / entry / "config.pbtxt").is_file()
    finally:
        await model.close()
    assert not await ready(triton, entry)


async def test_a_model_that_cannot_come_back_is_unavailable_not_internal(triton: TritonServer, onnx: Path) -> None:
    anchors = (WIDTH // CELL) * (HEIGHT // CELL)
    write_python_backend_entry(
        triton.repository, "vanishing", onnx, "images", (3, HEIGHT, WIDTH), ["output0"], [(6, anchors)]
    )
    backend = await TritonBackend.load(triton.grpc_url, "vanishing")
    try:
        async with aioclient.InferenceServerClient(triton.grpc_url) as client:
            await client.unload_model("vanishing")
        (triton.repository / "vanishing").rename(triton.repository / ".vanished")
        with pytest.raises(BackendUnavailable, match="Triton lost model 'vanishing' and cannot load it again"):
            await backend.infer(np.zeros((1, 3, HEIGHT, WIDTH), np.float32))
    finally:
        await backend.close(unload=False)


class RoundRobin:
    """A TCP proxy handing each new connection to the next of several servers, as a Kubernetes
    Service does with Triton replicas behind it."""

    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self.connections = 0
        self.server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> RoundRobin:
        self.server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self._writers:
            writer.close()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.upstreams[self.connections % len(self.upstreams)].rsplit(":", 1)
        self.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        self._writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(1 << 16):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_a_replica_the_load_did_not_reach_gets_the_model_from_the_inference_connection(
    triton: TritonServer, onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Two Triton replicas on one repository behind one address: the load lands on one, the first
    # inference (another connection) on the other, which loads the model there and answers.
    stub_entry(triton.repository, onnx, "replicated")
    replica = TritonServer(triton.repository, tmp_path_factory.mktemp("replica"))
    await asyncio.to_thread(replica.start)
    try:
        async with RoundRobin([triton.grpc_url, replica.grpc_url]) as service:
            backend = await TritonBackend.load(service.url, "replicated", shared_memory="off")
            try:
                assert await ready(triton, "replicated")
                assert not await ready(replica, "replicated")
                batch = np.random.default_rng(1).random((3, 3, HEIGHT, WIDTH), dtype=np.float32)
                (output,) = await backend.infer(batch)
                assert output.shape[0] == 3
                assert service.connections == 2  # the load's connection and the inference's
                assert await ready(replica, "replicated")
            finally:
                await backend.close(unload=False)
    finally:
        await asyncio.to_thread(replica.stop)


# --- detector processes sharing one Triton ------------------------------------------------------


@dataclass
class Traffic:
    """Unary Detect calls and one DetectStream against a detector until stopped; every failure kept."""

    name: str
    port: int
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._unary()), asyncio.create_task(self._stream())]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def answers(self, more: int) -> None:
        """Wait until ``more`` further answers arrived."""
        target = self.answered + more
        await eventually(lambda: self.answered >= target, f"{more} more answers from {self.name}")

    async def _unary(self) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            while not self._stop.is_set():
                try:
                    response = await stub.Detect(pb.DetectRequest(image=IMAGE), timeout=DEADLINE_S)
                except grpc.aio.AioRpcError as error:
                    self.failures.append(f"Detect: {error.code().name} {error.details()}")
                else:
                    self.answered += bool(response.detections.boxes)
                await asyncio.sleep(0.02)

    async def _stream(self) -> None:
        async def frames() -> AsyncIterator[pb.DetectStreamRequest]:
            frame_id = 0
            while not self._stop.is_set():
                yield pb.DetectStreamRequest(frame_id=frame_id, image=IMAGE)
                frame_id += 1
                await asyncio.sleep(0.03)

        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
            try:
                async for answer in stub.DetectStream(frames()):
                    if answer.error_code:
                        self.failures.append(f"stream frame {answer.frame_id}: {answer.error_message}")
                    else:
                        self.answered += 1
            except grpc.aio.AioRpcError as error:
                self.failures.append(f"DetectStream: {error.code().name} {error.details()}")


@dataclass
class Detector:
    process: ServiceProcess
    traffic: Traffic

    @property
    def entry(self) -> str:
        return str(self.process.wait_for("triton model loaded")[0]["triton_model"])

    def holder_prefix(self) -> str:
        return f"-{self.process.proc.pid}-"


async def test_detectors_come_and_go_without_taking_models_from_each_other(
    tmp_path: Path, stub_zip: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    triton = await asyncio.to_thread(start_triton, tmp_path_factory.mktemp("triton-fleet"))
    v1 = model_folder(stub_zip, tmp_path / "v1")
    v7 = model_folder(stub_zip, tmp_path / "v7", version="7")
    leases = triton.repository / STATE / "leases"
    with contextlib.ExitStack() as processes:

        async def detector(name: str, model: Path, data: str) -> Detector:
            env = {
                "VISIONLOOP_DATA_DIR": str(tmp_path / data),
                "DETECTOR_BACKEND": "triton",
                "TRITON_URL": triton.grpc_url,
                "TRITON_MODEL_REPOSITORY": str(triton.repository),
                "TRITON_LEASE_SECONDS": str(LEASE_SECONDS),
                "DETECTOR_MODEL_PATHS": f"stub={model}",
                **OPEN_ADMISSION_ENV,  # a busy machine must not turn the traffic's frames away
            }
            process = await asyncio.to_thread(processes.enter_context, serve("detector", tmp_path, env))
            traffic = Traffic(name, process.ports()["detector"])
            traffic.start()
            await traffic.answers(5)
            return Detector(process, traffic)

        async def leave(detector: Detector, sig: int) -> None:
            if sig == signal.SIGTERM:
                await detector.traffic.stop()  # a rolling update drains the pod's clients first
            detector.process.terminate(sig)
            await asyncio.to_thread(detector.process.proc.wait, 30)
            await detector.traffic.stop()  # a killed one's own clients fail, of course: not counted

        def holders(entry: str) -> list[str]:
            return sorted(lease.name for lease in (leases / entry).iterdir())

        def no_failures(*detectors: Detector) -> None:
            failed = {d.traffic.name: d.traffic.failures for d in detectors if d.traffic.failures}
            assert not failed, failed

        try:
            a = await detector("a", v1, "a")
            b = await detector("b", v1, "b")
            shared = a.entry
            assert b.entry == shared  # the same files: one entry on Triton for both
            await eventually(lambda: len(holders(shared)) == 2, "a lease each")  # renewals restore a pruned one

            # a is killed: b's calls go on; b's reaper clears a's stale lease and leaves the model.
            await leave(a, signal.SIGKILL)
            await eventually(
                lambda: [b.holder_prefix() in holder for holder in holders(shared)] == [True], "a's lease reaped"
            )
            await b.traffic.answers(20)
            assert await ready(triton, shared)
            no_failures(b)

            # a comes back (a restart): loading the entry again leaves b undisturbed.
            a = await detector("a2", v1, "a")
            assert a.entry == shared
            await b.traffic.answers(20)
            no_failures(a, b)

            # b rolls to version 7: the new pod starts, then the old one stops gracefully.
            b7 = await detector("b7", v7, "b7")
            assert b7.entry != shared
            await leave(b, signal.SIGTERM)
            await asyncio.gather(a.traffic.answers(20), b7.traffic.answers(20))
            assert await ready(triton, shared)  # a still holds it
            no_failures(a, b, b7)

            # a is killed for good: nobody holds v1 any more; b7's reaper unloads it in bounded time.
            await leave(a, signal.SIGKILL)
            await eventually(lambda: not_ready(triton, shared), "the unused model unloaded")
            assert not (triton.repository / shared).exists()  # the entry the detectors wrote is deleted
            await b7.traffic.answers(20)
            assert await ready(triton, b7.entry)
            await b7.traffic.stop()
            no_failures(b7)

            # Triton gone: a robot gets UNAVAILABLE (retry later), never INTERNAL.
            await asyncio.to_thread(triton.stop)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{b7.traffic.port}") as channel:
                stub = detector_service_pb2_grpc.DetectorServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.Detect(pb.DetectRequest(image=IMAGE), timeout=DEADLINE_S)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE, caught.value.details()
        finally:
            await asyncio.to_thread(triton.stop)


async def not_ready(triton: TritonServer, entry: str) -> bool:
    return not await ready(triton, entry)

"""Hub benchmark: the raw storage back end and the hub's gRPC ImageService side by side, as ratios.

1. Upload throughput: N generated JPEGs through ``ImageService.UploadImage`` (unary) and
   ``ImageService.UploadImages`` (batch stream) from several concurrent client tasks, versus
   ``ObjectStore.put_bytes`` of the same bytes straight into a separate folder / bucket from as
   many threads. Reports images/s, MB/s, the hub process's CPU per image, how many of the
   machine's cores were busy (everything on it: client, hub, database, S3 server), the machine's
   CPU per image split by those processes, and hub/raw (target >= 0.7x), as medians of
   interleaved rounds; then the most images/s the machine allows each path (``machine_bound``),
   which tells a ratio the hub sets from one the machine sets.
2. Query latency: the first page (100 images) of ``ImageService.ListImages`` over a project with
   ``--rows`` images (bulk-inserted into the database, not uploaded), newest and priority order,
   unfiltered and with a tag or a state filter. Reports p50/p95 of the RPC and of the same SQL
   statements replayed on a plain DB-API cursor, so the difference is the service's overhead
   (target p95 < 50 ms).

Uploads go to ``visionloop serve loop`` in its own process, as the hub is deployed (``--hub
in-process`` runs it in the benchmark's process instead, as ``tests/hub/conftest.py`` does); the
query part always runs it in-process, as it fills the tables and calls the handler directly.
Real gRPC on loopback either way.

Run from the repository root::

    .venv/bin/python -m benchmarks.hub_benchmark                    # SQLite + folder
    .venv/bin/python -m benchmarks.hub_benchmark --stack postgres   # PostgreSQL + S3 (moto)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, event, insert, select, text
from tqdm import tqdm

from visionloop.common.v1 import image_pb2, transfer_pb2
from visionloop.lib.storage import CHUNK_BYTES, LocalObjectStore, ObjectStore, S3ObjectStore
from visionloop.loop.v1 import image_service_pb2 as pb
from visionloop.loop.v1 import image_service_pb2_grpc, project_service_pb2, project_service_pb2_grpc
from visionloop.runtime.logging import configure_logging
from visionloop.runtime.threads import read_stat
from visionloop.server.hub.config import LoopSettings
from visionloop.server.hub.db import schema
from visionloop.server.hub.images import ImageServicer, image_key
from visionloop.server.hub.state import Hub

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # also as `python benchmarks/hub_benchmark.py`: tests/ runs the hub and its servers
    sys.path.insert(0, str(REPO))
UPLOAD_TARGET = 0.7  # hub throughput / raw store throughput
QUERY_TARGET_MS = 50.0  # p95 of one ListImages page
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
WIDTH, HEIGHT = 640, 480
PAGE = 100
MB = 1_000_000
ROUNDS = 5  # interleaved upload rounds per path
PROCESS = "process"  # the hub's CPU seconds in all, beside its thread pools' (hub_process)
CLIENT = "client"  # the benchmark's own process: raw puts, or the gRPC client
S3_SERVER = "S3 server"  # moto: Python, its work under one interpreter lock


def check(condition: bool, message: str) -> None:
    """Like assert, but not stripped by python -O: a benchmark that measured the wrong thing must fail."""
    if not condition:
        raise RuntimeError(message)


# --------------------------------------------------------------------------- stacks


@dataclass
class Stack:
    name: str
    description: str
    settings: LoopSettings
    raw_store: ObjectStore
    raw_store_name: str


@contextlib.contextmanager
def open_stack(name: str, workdir: Path, hub_replicas: int = 1) -> Iterator[Stack]:
    """Settings for a fresh hub plus a separate raw store on the same back end."""
    overrides: dict[str, Any] = {"port": 0, "host": "127.0.0.1", "data_dir": workdir / "hub"}
    if hub_replicas > 1:  # as the Helm chart runs the hub: its uploads check the sweep's log
        overrides["hub_replicas"] = hub_replicas
    if name == "sqlite":
        yield Stack(
            name,
            "SQLite + local folder",
            LoopSettings(**overrides),
            LocalObjectStore(workdir / "raw-blobs"),
            "LocalObjectStore.put_bytes",
        )
        return
    from visionloop.testing.servers import postgres_server, s3_server

    # The figures in benchmarks/README.md were taken with fsync off (and on moto): kept comparable.
    with postgres_server(fsync=False) as url, s3_server() as s3:
        overrides["database_url"] = url
        overrides.update(s3)
        raw = S3ObjectStore(s3["s3_endpoint"], "raw-benchmark", s3["s3_access_key_id"], s3["s3_secret_access_key"])
        raw.ensure_bucket()
        description = "PostgreSQL + S3 (moto)"
        if hub_replicas > 1:
            description += f", VISIONLOOP_HUB_REPLICAS={hub_replicas} (uploads fenced against other hubs' sweeps)"
        yield Stack(name, description, LoopSettings(**overrides), raw, "S3ObjectStore.put_bytes")


@contextlib.asynccontextmanager
async def hub_process(
    settings: LoopSettings, workdir: Path
) -> AsyncIterator[tuple[grpc.aio.Channel, Callable[[], float]]]:
    """The hub as it is deployed: ``visionloop serve loop`` in a process of its own (started as
    ``tests/harness.py`` starts services), so the benchmark's client does not share its
    interpreter lock. Same settings as the in-process hub, passed as environment variables.

    Yields the channel and a function reading the hub's CPU seconds from its metrics endpoint:
    ``process_cpu_seconds_total`` as ``"process"``, and ``visionloop_thread_cpu_seconds_total`` by
    thread pool. CPU per image is steadier than images/s on a machine shared with others.
    """
    from tests.harness import serve

    env = {"VISIONLOOP_LOG_LEVEL": "info"}  # successful RPCs log at debug: not written
    for name, spec in LoopSettings.model_fields.items():
        if name in settings.model_fields_set and spec.alias and name not in ("port", "host"):
            env[spec.alias] = str(getattr(settings, name))
    with serve("loop", workdir, env) as service:
        port = service.ports()["loop"]
        metrics = f"http://127.0.0.1:{service.metrics_port()}/metrics"

        def cpu_seconds() -> dict[str, float]:
            with urllib.request.urlopen(metrics, timeout=10) as response:
                text_ = response.read().decode()
            seconds: dict[str, float] = {}
            for family in text_string_to_metric_families(text_):
                if family.name == "process_cpu_seconds":
                    seconds[PROCESS] = float(family.samples[0].value)
                elif family.name == "visionloop_thread_cpu_seconds":
                    seconds.update((sample.labels["pool"], sample.value) for sample in family.samples)
            if PROCESS not in seconds:
                raise RuntimeError(f"{metrics} has no process_cpu_seconds_total")
            return seconds

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
            yield channel, cpu_seconds


async def create_project(channel: grpc.aio.Channel, name: str) -> project_service_pb2.ProjectRef:
    ref = project_service_pb2.ProjectRef(organization="bench", project=name)
    await project_service_pb2_grpc.ProjectServiceStub(channel).CreateProject(
        project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=ref, display_name=name))
    )
    return ref


# --------------------------------------------------------------------------- pictures


def pictures(count: int, seed: int, desc: str) -> list[bytes]:
    """Distinct 640x480 JPEGs that compress like camera frames (~100 KiB, not like pure noise).

    A few smooth base scenes (upscaled noise plus grain) are reused; a random 32x32 patch at a
    random place makes every picture's bytes unique.
    """
    rng = np.random.default_rng(seed)
    bases = []
    for _ in range(8):
        coarse = Image.fromarray(rng.integers(0, 255, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.int16)
        grain = rng.integers(-12, 12, (HEIGHT, WIDTH, 3), dtype=np.int16)
        bases.append((smooth + grain).clip(0, 255).astype(np.uint8))
    out: list[bytes] = []
    for i in tqdm(range(count), desc=desc, unit="img", leave=False):
        pixels = bases[i % len(bases)].copy()
        y, x = int(rng.integers(0, HEIGHT - 32)), int(rng.integers(0, WIDTH - 32))
        pixels[y : y + 32, x : x + 32] = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    check(len({hashlib.sha256(d).digest() for d in out}) == count, "pictures must be distinct")
    return out


# --------------------------------------------------------------------------- uploads


@dataclass
class Throughput:
    path: str
    images: int
    seconds: float
    bytes: int
    images_per_s: float = 0.0
    mb_per_s: float = 0.0
    ratio: float | None = None  # vs the raw store
    hub_cpu_ms: float | None = None  # the hub process's CPU time per image (hub in its own process)
    hub_pool_cpu_ms: dict[str, float] | None = None  # the same by thread pool
    busy_cores: float | None = None  # the whole machine's busy CPU seconds per second (Linux)
    process_cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU time per image by process role
    bound_per_s: float | None = None  # the most images/s this machine allows the path (machine_bound)
    bound_by: str = ""  # what sets that bound

    def __post_init__(self) -> None:
        self.images_per_s = self.images / self.seconds
        self.mb_per_s = self.bytes / MB / self.seconds

    @property
    def call(self) -> str:
        """The call the path times: put_bytes, UploadImage or UploadImages."""
        return self.path.split()[-1].rpartition(".")[2]


def machine_bound(process_cpu_ms: dict[str, float], cores: int) -> tuple[float, str] | None:
    """The most images/s this machine allows a path, from its CPU per image by process, and what sets it.

    All the path's processes together get at most ``cores`` cores, and the S3 server (moto) at most
    one: its work runs under one interpreter lock. Comparing the paths' bounds tells a ratio the
    hub's code sets from one the machine sets: the raw path stops at the S3 server's core, while
    the hub paths, doing more work per image beside it, share all of the cores.
    """
    total = sum(process_cpu_ms.values())
    if total <= 0:
        return None
    bounds = [(cores * 1000 / total, f"{cores} cores at {total:.2f} ms of machine CPU per image")]
    s3 = process_cpu_ms.get(S3_SERVER, 0.0)
    if s3 > 0:
        bounds.append((1000 / s3, f"the S3 server's one core at {s3:.2f} ms per image"))
    return min(bounds)


def machine_busy_seconds() -> float | None:
    """CPU seconds the machine's cores have spent busy since boot, from Linux's /proc/stat (else None).

    Busy is user, nice, system, irq and softirq time. Idle, iowait and steal are left out: steal is
    time the hypervisor gave to other guests while this one wanted to run.
    """
    try:
        with open("/proc/stat") as stat:
            user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in stat.readline().split()[1:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def process_role(pid: int, comm: str, cmdline: bytes) -> str:
    """Which part of the benchmark a process is, for the CPU split by process."""
    if pid == os.getpid():
        return CLIENT
    if b"moto.server" in cmdline:
        return S3_SERVER
    if comm.startswith("postgres"):
        return "PostgreSQL"
    if b"serve\0loop" in cmdline:
        return "hub"
    return "other"


def process_cpu() -> dict[tuple[int, int], tuple[str, float]]:
    """Each live process's role (``process_role``) and CPU seconds (user + system) from Linux's
    /proc, keyed by process id and start time; empty elsewhere."""
    processes: dict[tuple[int, int], tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                comm, seconds, start = read_stat(Path(entry.path, "stat"))
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:  # ended meanwhile
                continue
            processes[int(entry.name), start] = (process_role(int(entry.name), comm, cmdline), seconds)
    return processes


def cpu_by_process(
    before: dict[tuple[int, int], tuple[str, float]], after: dict[tuple[int, int], tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each role's processes spent between two ``process_cpu`` readings.

    A process that ended in between is missing from ``after`` and its share is lost: the servers
    and the hub live through the whole benchmark, and PostgreSQL's backends through the hub's
    connection pool.
    """
    totals: dict[str, float] = collections.defaultdict(float)
    for key, (role, seconds) in after.items():
        totals[role] += seconds - before.get(key, (role, 0.0))[1]
    return dict(totals)


@dataclass
class Timed:
    """A path's round: its wall time, and over exactly that time the machine's busy CPU seconds and
    the CPU seconds of its processes by role."""

    seconds: float
    busy: float | None
    processes: dict[str, float]


class Stopwatch:
    """Wall time, machine busy time and CPU time by process of the block, read at the same two moments."""

    def __enter__(self) -> Stopwatch:
        self._processes = process_cpu()
        self._start = time.perf_counter()
        self._busy = machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = machine_busy_seconds()
        seconds = time.perf_counter() - self._start
        processes = cpu_by_process(self._processes, process_cpu())
        self.timed = Timed(seconds, None if busy is None or self._busy is None else busy - self._busy, processes)


def raw_put(store: ObjectStore, images: Sequence[bytes], concurrency: int, desc: str, prefix: str = "") -> Timed:
    """Put every image into ``store`` from ``concurrency`` threads (keys as the hub names them).

    Timed from the first put to the last, the keys' hashing before it left out."""
    keys = [prefix + image_key(hashlib.sha256(d).hexdigest()) for d in images]
    with tqdm(total=len(images), desc=desc, unit="img", leave=False) as bar:

        def put(item: tuple[str, bytes]) -> None:
            store.put_bytes(*item)
            bar.update()

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            with Stopwatch() as watch:
                list(pool.map(put, zip(keys, images, strict=True)))
            return watch.timed


async def hub_unary(
    stub: image_service_pb2_grpc.ImageServiceStub,
    ref: project_service_pb2.ProjectRef,
    images: Sequence[bytes],
    concurrency: int,
    desc: str,
) -> Timed:
    """Upload every image with UploadImage from ``concurrency`` client tasks."""
    pending = iter(images)
    metadata = image_pb2.ImageMetadata(tags=["benchmark"], camera_id="cam-0")
    with tqdm(total=len(images), desc=desc, unit="img", leave=False) as bar:

        async def worker() -> None:
            for data in pending:  # shared iterator: each task takes the next image
                response = await stub.UploadImage(
                    pb.UploadImageRequest(ref=ref, image=pb.ImageUpload(data=data, metadata=metadata))
                )
                check(not response.duplicate, "benchmark pictures must be new to the hub")
                bar.update()

        with Stopwatch() as watch:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return watch.timed


async def hub_stream(
    stub: image_service_pb2_grpc.ImageServiceStub,
    ref: project_service_pb2.ProjectRef,
    images: Sequence[bytes],
    concurrency: int,
    desc: str,
) -> Timed:
    """Upload every image with ``concurrency`` parallel UploadImages streams."""
    metadata = image_pb2.ImageMetadata(tags=["benchmark"], camera_id="cam-0")
    batches = [list(enumerate(images))[i::concurrency] for i in range(concurrency)]
    with tqdm(total=len(images), desc=desc, unit="img", leave=False) as bar:

        async def requests(batch: list[tuple[int, bytes]]) -> AsyncIterator[pb.UploadImagesRequest]:
            for n, (sequence, data) in enumerate(batch):
                blob = transfer_pb2.BlobHeader(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
                header = pb.ImageHeader(sequence=sequence, blob=blob, metadata=metadata)
                yield (
                    pb.UploadImagesRequest(ref=ref, header=header) if n == 0 else pb.UploadImagesRequest(header=header)
                )
                for offset in range(0, len(data), CHUNK_BYTES):
                    chunk = transfer_pb2.BlobChunk(offset=offset, data=data[offset : offset + CHUNK_BYTES])
                    yield pb.UploadImagesRequest(chunk=chunk)

        async def stream(batch: list[tuple[int, bytes]]) -> None:
            received = 0
            async for response in stub.UploadImages(requests(batch)):
                check(response.error_code == 0, response.error_message)
                check(not response.duplicate, "benchmark pictures must be new to the hub")
                received += 1
                bar.update()
            check(received == len(batch), "one response per image")

        with Stopwatch() as watch:
            await asyncio.gather(*(stream(batch) for batch in batches if batch))
        return watch.timed


async def upload_benchmark(
    stack: Stack,
    channel: grpc.aio.Channel,
    count: int,
    concurrency: int,
    rounds: int = ROUNDS,
    hub_cpu_seconds: Callable[[], dict[str, float]] | None = None,
) -> tuple[list[Throughput], dict[str, Any]]:
    """The raw store, UploadImage and UploadImages in interleaved rounds (in a rotating order).

    A path's figures are medians over the rounds, and hub/raw is the median of the per-round
    ratios: on a machine whose speed drifts (shared cores), a slow spell then slows both sides of
    a ratio rather than one path. Every hub round uploads pictures the hub has not seen (it
    deduplicates by content); the raw store, a separate folder / bucket, gets the unary round's.
    """
    warm = concurrency  # untimed uploads first: connections, folders, prepared statements
    pics = pictures(2 * (rounds * count + warm), seed=1, desc="generate JPEGs")
    unary_sets = [pics[i * count : (i + 1) * count] for i in range(rounds)]
    stream_sets = [pics[(rounds + i) * count : (rounds + i + 1) * count] for i in range(rounds)]
    warm_unary, warm_stream = pics[2 * rounds * count :][:warm], pics[2 * rounds * count + warm :]
    stub = image_service_pb2_grpc.ImageServiceStub(channel)
    ref = await create_project(channel, "upload")

    await asyncio.to_thread(raw_put, stack.raw_store, warm_unary, concurrency, "raw warm-up", "warm/")
    await hub_unary(stub, ref, warm_unary, concurrency, "UploadImage warm-up")
    await hub_stream(stub, ref, warm_stream, concurrency, "UploadImages warm-up")

    seconds: dict[str, list[float]] = {"raw": [], "unary": [], "stream": []}
    cpu_ms: dict[str, list[dict[str, float]]] = {"unary": [], "stream": []}  # per round: "process" and pools
    busy: dict[str, list[float]] = {"raw": [], "unary": [], "stream": []}  # machine cores busy per round
    by_process: dict[str, list[dict[str, float]]] = {"raw": [], "unary": [], "stream": []}  # CPU ms/img

    async def timed(name: str, r: int) -> Timed:
        tag = f"{r + 1}/{rounds}"
        if name == "raw":
            return await asyncio.to_thread(
                raw_put, stack.raw_store, unary_sets[r], concurrency, f"raw put_bytes {tag}", f"r{r}/"
            )
        if name == "unary":
            return await hub_unary(stub, ref, unary_sets[r], concurrency, f"hub UploadImage {tag}")
        return await hub_stream(stub, ref, stream_sets[r], concurrency, f"hub UploadImages {tag}")

    order = ["raw", "unary", "stream"]
    for r in range(rounds):
        for name in order[r % 3 :] + order[: r % 3]:
            hub_cpu = hub_cpu_seconds if name != "raw" else None
            cpu_start = await asyncio.to_thread(hub_cpu) if hub_cpu else {}
            round_ = await timed(name, r)
            seconds[name].append(round_.seconds)
            if round_.busy is not None:
                busy[name].append(round_.busy / round_.seconds)
            by_process[name].append({role: cpu * 1000 / count for role, cpu in round_.processes.items()})
            if hub_cpu:
                cpu_end = await asyncio.to_thread(hub_cpu)
                cpu_ms[name].append({k: (v - cpu_start.get(k, 0.0)) * 1000 / count for k, v in cpu_end.items()})

    def result(path: str, name: str, sets: list[list[bytes]]) -> Throughput:
        size = statistics.median(sum(len(d) for d in images) for images in sets)
        throughput = Throughput(path, count, statistics.median(seconds[name]), int(size))
        if busy[name]:
            throughput.busy_cores = statistics.median(busy[name])
        roles = {role for per_round in by_process[name] for role in per_round}
        throughput.process_cpu_ms = {
            role: statistics.median(per_round.get(role, 0.0) for per_round in by_process[name]) for role in roles
        }
        bound = machine_bound(throughput.process_cpu_ms, os.cpu_count() or 1)
        if bound is not None:
            throughput.bound_per_s, throughput.bound_by = bound
        return throughput

    raw_result = result(f"raw {stack.raw_store_name}", "raw", unary_sets)
    unary_result = result("hub ImageService.UploadImage", "unary", unary_sets)
    stream_result = result("hub ImageService.UploadImages", "stream", stream_sets)
    ratios: dict[str, list[float]] = {}
    for name, path_result in (("unary", unary_result), ("stream", stream_result)):
        ratios[name] = [raw_s / hub_s for raw_s, hub_s in zip(seconds["raw"], seconds[name], strict=True)]
        path_result.ratio = statistics.median(ratios[name])
        if hub_cpu_seconds is not None:
            keys = sorted({k for per_round in cpu_ms[name] for k in per_round} - {PROCESS})
            path_result.hub_cpu_ms = statistics.median(per_round[PROCESS] for per_round in cpu_ms[name])
            path_result.hub_pool_cpu_ms = {
                k: statistics.median(per_round.get(k, 0.0) for per_round in cpu_ms[name]) for k in keys
            }
    sizes = [len(d) for images in unary_sets + stream_sets for d in images]
    info = {
        "images": count,
        "rounds": rounds,
        "width": WIDTH,
        "height": HEIGHT,
        "mean_kib": statistics.mean(sizes) / 1024,
        "concurrency": concurrency,
        "round_seconds": seconds,
        "round_ratios": ratios,
        "round_hub_cpu_ms": cpu_ms if hub_cpu_seconds is not None else None,
        "round_busy_cores": busy,
        "round_process_cpu_ms": by_process,
        "cpus": os.cpu_count(),
    }
    return [raw_result, unary_result, stream_result], info


# --------------------------------------------------------------------------- queries

STATES = [
    (image_pb2.IMAGE_STATE_INBOX, 0.60),
    (image_pb2.IMAGE_STATE_ANNOTATE, 0.15),
    (image_pb2.IMAGE_STATE_REVIEW, 0.05),
    (image_pb2.IMAGE_STATE_COMPLETE, 0.18),
    (image_pb2.IMAGE_STATE_TRASH, 0.02),
]
ROW_TAGS = 10  # every image has one of row-0 .. row-9 (10 % each)
RARE_TAG, RARE_SHARE = "weed", 0.02  # and 2 % also have "weed"
BATCH = 5_000
MIN_ROWS = 10_000

NEWEST, PRIORITY = pb.IMAGE_ORDER_NEWEST, pb.IMAGE_ORDER_PRIORITY
QUERIES: list[tuple[str, int, pb.ImageFilter]] = [
    ("newest", NEWEST, pb.ImageFilter()),
    ("priority", PRIORITY, pb.ImageFilter()),
    ("newest, tag row-3 (10%)", NEWEST, pb.ImageFilter(tags=["row-3"])),
    ("priority, tag row-3 (10%)", PRIORITY, pb.ImageFilter(tags=["row-3"])),
    ("newest, state ANNOTATE (15%)", NEWEST, pb.ImageFilter(states=[image_pb2.IMAGE_STATE_ANNOTATE])),
    ("priority, state ANNOTATE (15%)", PRIORITY, pb.ImageFilter(states=[image_pb2.IMAGE_STATE_ANNOTATE])),
    (f"newest, tag {RARE_TAG} ({RARE_SHARE:.0%})", NEWEST, pb.ImageFilter(tags=[RARE_TAG])),
]


def fill_rows(hub: Hub, project_pk: int, rows: int) -> None:
    """Bulk-insert ``rows`` images (and their tags) into the project with SQLAlchemy core."""
    rng = np.random.default_rng(7)
    states = rng.choice([s for s, _ in STATES], size=rows, p=[p for _, p in STATES])
    priorities = rng.random(rows)
    rows_tag = rng.integers(0, ROW_TAGS, rows)
    rare = rng.random(rows) < RARE_SHARE
    start = datetime.now(UTC) - timedelta(days=100)
    step = timedelta(days=100) / rows
    engine = hub.db.engine
    images, tags = schema.Image.__table__, schema.ImageTag.__table__
    with tqdm(total=rows, desc=f"insert {rows:,} images", unit="row", leave=False) as bar:
        for first in range(0, rows, BATCH):
            batch = [
                {
                    "project_pk": project_pk,
                    "sha256": hashlib.sha256(f"bench-{i}".encode()).hexdigest(),
                    "camera_id": f"cam-{i % 4}",
                    "source": "benchmark",
                    "create_time": start + i * step,
                    "upload_time": start + i * step,
                    "state": int(states[i]),
                    "width": WIDTH,
                    "height": HEIGHT,
                    "content_type": "image/jpeg",
                    "size_bytes": 100_000,
                    "priority": float(priorities[i]),
                    "annotation_count": 0,
                    "detection_count": 0,
                }
                for i in range(first, min(first + BATCH, rows))
            ]
            with engine.begin() as conn:
                conn.execute(insert(images), batch)
            bar.update(len(batch))
    with engine.connect() as conn:
        pks = dict(conn.execute(select(images.c.sha256, images.c.pk).where(images.c.project_pk == project_pk)).all())
    pairs: list[dict[str, Any]] = []
    for i in range(rows):
        pk = pks[hashlib.sha256(f"bench-{i}".encode()).hexdigest()]
        pairs.append({"image_pk": pk, "tag": f"row-{rows_tag[i]}"})
        if rare[i]:
            pairs.append({"image_pk": pk, "tag": RARE_TAG})
    with tqdm(total=len(pairs), desc=f"insert {len(pairs):,} tags", unit="row", leave=False) as bar:
        for first in range(0, len(pairs), BATCH):
            batch = pairs[first : first + BATCH]
            with engine.begin() as conn:
                conn.execute(insert(tags), batch)
            bar.update(len(batch))
    if hub.db.dialect == "postgresql":  # what autovacuum would do shortly after such a load
        with engine.begin() as conn:
            conn.execute(text("ANALYZE images"))
            conn.execute(text("ANALYZE image_tags"))


@dataclass
class Latency:
    """Milliseconds for one query kind: through gRPC, the handler called directly, the bare SQL."""

    query: str
    rpc_p50_ms: float
    rpc_p95_ms: float
    handler_p50_ms: float
    handler_p95_ms: float
    sql_p50_ms: float
    sql_p95_ms: float
    statements: list[str] = field(default_factory=list)

    @property
    def overhead_p50_ms(self) -> float:
        return self.rpc_p50_ms - self.sql_p50_ms


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


@contextlib.contextmanager
def captured_sql(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement (and its DB-API parameters) the engine sends while the block runs."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", capture)


@contextlib.contextmanager
def sql_replayer(engine: Engine, statements: list[tuple[str, Any]]) -> Iterator[Callable[[], None]]:
    """Run the captured SELECTs on a plain DB-API cursor, one transaction like the service's."""
    selects = [(s, p) for s, p in statements if s.lstrip().upper().startswith("SELECT")]
    raw = engine.raw_connection()

    def replay() -> None:
        cursor = raw.cursor()
        for statement, parameters in selects:
            cursor.execute(statement, parameters)
            cursor.fetchall()
        cursor.close()
        raw.commit()

    try:
        yield replay
    finally:
        raw.close()


async def query_benchmark(
    hub: Hub, channel: grpc.aio.Channel, rows: int, repeats: int
) -> tuple[list[Latency], dict[str, Any]]:
    stub = image_service_pb2_grpc.ImageServiceStub(channel)
    servicer = ImageServicer(hub)  # the same handler, called without gRPC
    ref = await create_project(channel, "query")
    project_pk = await hub.db.read(
        lambda s: s.scalar(
            select(schema.Project.pk).where(schema.Project.organization == "bench", schema.Project.name == "query")
        )
    )
    started = time.perf_counter()
    await asyncio.to_thread(fill_rows, hub, project_pk, rows)
    fill_s = time.perf_counter() - started

    async def timed(call: Callable[[], Awaitable[object]]) -> float:
        begin = time.perf_counter()
        await call()
        return (time.perf_counter() - begin) * 1000

    results: list[Latency] = []
    warm = 5
    with tqdm(total=len(QUERIES) * (repeats + warm), desc="ListImages queries", unit="q", leave=False) as bar:
        for name, order, filter_ in QUERIES:
            request = pb.ListImagesRequest(ref=ref, filter=filter_, order=order, page_size=PAGE)  # type: ignore[arg-type]
            with captured_sql(hub.db.engine) as statements:
                response = await stub.ListImages(request)
            check(len(response.images) == PAGE, f"{name}: a full first page")
            check(bool(response.next_page_token), f"{name}: a next page")
            times: dict[str, list[float]] = {"rpc": [], "handler": [], "sql": []}
            with sql_replayer(hub.db.engine, statements) as replay:
                calls: dict[str, Callable[[], Awaitable[object]]] = {
                    "rpc": functools.partial(stub.ListImages, request),
                    "handler": functools.partial(servicer.ListImages, request, None),  # type: ignore[arg-type]
                    "sql": functools.partial(asyncio.to_thread, replay),  # a worker thread, as the service runs SQL
                }
                for i in range(warm + repeats):
                    for path, call in calls.items():  # interleaved: background noise hits all three alike
                        elapsed = await timed(call)
                        if i >= warm:
                            times[path].append(elapsed)
                    bar.update()
            results.append(
                Latency(
                    name,
                    *(percentile(times[path], q) for path in ("rpc", "handler", "sql") for q in (50, 95)),
                    statements=[s for s, _ in statements],
                )
            )
    return results, {"rows": rows, "page_size": PAGE, "repeats": repeats, "fill_seconds": fill_s}


# --------------------------------------------------------------------------- report


def milliseconds(parts: dict[str, float]) -> str:
    """``name 1.23 ms, ...``, largest first, leaving out what rounds to nothing."""
    ordered = sorted(parts.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {ms:.2f} ms" for name, ms in ordered if ms >= 0.005)


def upload_table(results: list[Throughput], info: dict[str, Any], hub: str) -> str:
    where = "its own process" if hub == "process" else "the benchmark's process"
    lines = [
        f"Upload throughput: {info['images']} JPEGs {info['width']}x{info['height']} per round, "
        f"mean {info['mean_kib']:.0f} KiB, concurrency {info['concurrency']}, hub in {where}; "
        f"medians of {info['rounds']} interleaved rounds (hub/raw: of the per-round ratios)",
        f"{'path':<40} {'images/s':>9} {'MB/s':>8} {'hub CPU/img':>12} {'cores busy':>11} {'hub/raw':>8}  "
        f"target >= {UPLOAD_TARGET:.1f}x",
    ]
    for r in results:
        verdict = "" if r.ratio is None else ("ok" if r.ratio >= UPLOAD_TARGET else "MISS")
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        cpu = "" if r.hub_cpu_ms is None else f"{r.hub_cpu_ms:.1f} ms"
        cores = "" if r.busy_cores is None else f"{r.busy_cores:.2f}/{info['cpus']}"
        lines.append(
            f"{r.path:<40} {r.images_per_s:>9.1f} {r.mb_per_s:>8.1f} {cpu:>12} {cores:>11} {ratio:>8}  {verdict}"
        )
    for name, ratios in info["round_ratios"].items():
        lines.append(f"  {name} hub/raw per round: " + ", ".join(f"{x:.2f}x" for x in ratios))
    for r in results:
        if r.process_cpu_ms:
            lines.append(
                f"  {r.call} machine CPU/img by process: {milliseconds(r.process_cpu_ms)}"
                f" (sum {sum(r.process_cpu_ms.values()):.2f} ms)"
            )
        if r.hub_pool_cpu_ms:
            lines.append(f"  {r.call} hub CPU/img by thread pool: {milliseconds(r.hub_pool_cpu_ms)}")
    raw = results[0]
    for r in results:
        if r.bound_per_s is None:
            continue
        versus = f" = {r.bound_per_s / raw.bound_per_s:.2f}x raw's" if r is not raw and raw.bound_per_s else ""
        lines.append(
            f"  {r.call}: this machine allows at most {r.bound_per_s:.0f} img/s ({r.bound_by}){versus};"
            f" it ran at {r.images_per_s / r.bound_per_s:.0%} of that"
        )
    return "\n".join(lines)


def query_table(results: list[Latency], info: dict[str, Any]) -> str:
    lines = [
        f"ListImages latency (ms): first page of {info['page_size']} over {info['rows']:,} images, "
        f"{info['repeats']} queries each (rows filled in {info['fill_seconds']:.1f} s)",
        "  rpc = through gRPC; handler = ImageServicer.ListImages awaited directly; "
        "sql = the handler's SELECTs replayed on a DB-API cursor",
        f"{'query':<32} {'rpc p50':>7} {'rpc p95':>7} {'handler p50':>11} {'sql p50':>7} {'sql p95':>7} "
        f"{'rpc-sql p50':>11}  target rpc p95 < {QUERY_TARGET_MS:.0f}",
    ]
    for r in results:
        verdict = "ok" if r.rpc_p95_ms < QUERY_TARGET_MS else "MISS"
        lines.append(
            f"{r.query:<32} {r.rpc_p50_ms:>7.1f} {r.rpc_p95_ms:>7.1f} {r.handler_p50_ms:>11.1f} {r.sql_p50_ms:>7.1f} "
            f"{r.sql_p95_ms:>7.1f} {r.overhead_p50_ms:>11.1f}  {verdict}"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.hub.conftest import running_hub  # in-process, as the hub tests start it

    report: dict[str, Any] = {
        "stack": args.stack,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with (
        tempfile.TemporaryDirectory(prefix="visionloop-bench-") as tmp,
        open_stack(args.stack, Path(tmp), args.hub_replicas) as stack,
    ):
        report["description"] = stack.description
        report["hub"] = args.hub
        if args.only in (None, "upload"):
            async with contextlib.AsyncExitStack() as hubs:
                cpu_seconds: Callable[[], dict[str, float]] | None = None
                if args.hub == "process":
                    channel, cpu_seconds = await hubs.enter_async_context(hub_process(stack.settings, Path(tmp)))
                else:
                    channel = (await hubs.enter_async_context(running_hub(stack.settings))).channel
                uploads, info = await upload_benchmark(
                    stack, channel, args.images, args.concurrency, args.rounds, cpu_seconds
                )
            report["upload"] = {**info, "results": [asdict(r) for r in uploads]}
            report["upload_table"] = upload_table(uploads, info, args.hub)
        if args.only in (None, "query"):  # in-process: it fills the tables and calls the handler directly
            async with running_hub(stack.settings) as client:
                latencies, info = await query_benchmark(client.hub, client.channel, args.rows, args.queries)
                report["query"] = {
                    **info,
                    "results": [{**asdict(r), "overhead_p50_ms": r.overhead_p50_ms} for r in latencies],
                }
                report["query_table"] = query_table(latencies, info)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=["sqlite", "postgres"], default="sqlite", help="default: sqlite")
    parser.add_argument("--images", type=int, default=400, help="images per upload path and round (default 400)")
    parser.add_argument(
        "--rows", type=int, default=100_000, help="images in the query project (default 100000, at least 10000)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="client tasks / threads (default 8)")
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"interleaved upload rounds per path (default {ROUNDS})"
    )
    parser.add_argument("--queries", type=int, default=50, help="timed queries per query kind (default 50)")
    parser.add_argument("--only", choices=["upload", "query"], help="run one part only")
    parser.add_argument(
        "--hub",
        choices=["process", "in-process"],
        default="process",
        help="uploads against `visionloop serve loop` in its own process (default, as deployed) or in this one",
    )
    parser.add_argument(
        "--hub-replicas",
        type=int,
        default=1,
        help="VISIONLOOP_HUB_REPLICAS for the hub (default 1; the Helm chart runs 2 or more, which fences "
        "uploads against other hubs' blob sweeps on PostgreSQL)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    if args.rows < MIN_ROWS:  # the rarest filter must still fill a page
        parser.error(f"--rows must be at least {MIN_ROWS:,} so that every query fills a page of {PAGE}")
    if min(args.images, args.concurrency, args.queries, args.rounds, args.hub_replicas) < 1:
        parser.error("--images, --concurrency, --queries, --rounds and --hub-replicas must be at least 1")
    configure_logging(level="warning", stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's S3 server logs every request

    started = time.perf_counter()
    report = asyncio.run(run(args))
    report["seconds"] = time.perf_counter() - started
    print(f"\nVisionLoop hub benchmark: {report['description']}, {report['cpus']} CPUs, Python {report['python']}")
    for key in ("upload_table", "query_table"):
        if key in report:
            print()
            print(report.pop(key))
    print(f"\ntotal {report['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

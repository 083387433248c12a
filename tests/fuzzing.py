"""Descriptor-driven fuzzing of every RPC of every VisionLoop service, over real gRPC.

``visionloop up`` runs all five services in one process; server reflection on each lists
the RPCs it serves (so a new RPC is fuzzed without touching this file), and requests are
built from the reflected descriptors: plausible messages (ids harvested from earlier answers,
real pictures), extreme values (strings and repeated fields just over their limits or a
megabyte long, NaN and infinities, integers at their type's edges, enum values outside the
enum, timestamps and durations outside their ranges, deep and wide Structs), random and
mutated wire bytes, and request streams with a malformed message inside or a chunked
transfer that lies about its size or checksum.

A finding is an answer of INTERNAL or UNKNOWN (also inside a stream's per-item error_code),
a call that outlives its deadline (a hang; open-ended ``Watch*`` streams and ``Probe`` may),
a status message of more than 4 KiB (input echoed back), a crashed server, a stack trace or
an over-long line in the server's log; ``Report.growth_mib`` tells whether memory keeps growing.

Every call draws from its own ``random.Random(f"{seed}/{server}/{method}/{index}")``, so a
finding names the seed and call index; a run with the same seed replays it (the ids it picks
come from earlier answers, so replay the run, not the call alone). The test
(tests/test_fuzz.py) runs a bounded number of calls; ``scripts/fuzz --seconds 600 --seed 7``
runs longer.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import random
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import EncodeError, Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.harness import ServiceProcess, visionloop
from visionloop.runtime import limits as L

FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FAULT_VALUES = {code.value[0] for code in FAULTS}
MAX_DETAILS = 4096  # a status message longer than this echoes input back
MAX_LOG_LINE = 100_000
BYTES = 24 * 1024 * 1024  # bytes values one generated request holds at most (beyond: a few bytes each)
ENTRIES = 120_000  # repeated entries one generated request holds at most (a million-entry field aside)
DEADLINE_S = 30.0  # a finite call still running after this is a hang (generous: 2 shared cores)
OPEN_ENDED_S = 0.3  # how long an open-ended stream is read before the client gives up on it
HOLDS = {"visionloop.ops.v1.OpsService/Probe"}  # holds a call open by design (drain tests)
# The nodes' own project: never named by the fuzzer, so the trainer never trains on fuzz input
# and the detector's uploads land apart from it.
NODES_ORGANIZATION, NODES_PROJECT = "fuzz-nodes", "nodes"
ORGANIZATION, PROJECT = "fuzz", "target"
SERVICES = ("loop", "detector", "trainer", "converter", "annotator")
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class Rpc:
    """One RPC of one server, as its reflection describes it."""

    server: str  # "loop"
    service: str  # "visionloop.loop.v1.ImageService"
    method: MethodDescriptor

    @property
    def name(self) -> str:
        return f"{self.service}/{self.method.name}"

    @property
    def path(self) -> str:
        return f"/{self.name}"

    @property
    def open_ended(self) -> bool:
        """Streams that never end on their own (the servers' own convention), and Probe."""
        return self.name in HOLDS or (self.method.server_streaming and self.method.name.startswith("Watch"))


@dataclass
class Finding:
    rpc: str
    index: int
    case: str
    problem: str

    def __str__(self) -> str:
        return f"{self.rpc} #{self.index} ({self.case}): {self.problem}"


@dataclass
class Report:
    """What a fuzz run did and found."""

    seed: int
    calls: Counter[str] = field(default_factory=Counter)  # per RPC
    codes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    findings: list[Finding] = field(default_factory=list)
    slowest: Counter[str] = field(default_factory=Counter)  # seconds of the slowest call per RPC
    seconds: float = 0.0
    rss_mib: list[float] = field(default_factory=list)  # the server's resident memory after each round

    @property
    def growth_mib(self) -> float:
        """How much the server's memory grew from the first half of the run to the second.

        The least of each half: one large request makes a transient peak (a picture decoded, a
        16 MiB message), which the allocator gives back; growth that stays is what counts.
        """
        half = len(self.rss_mib) // 2
        if half == 0:
            return 0.0
        return min(self.rss_mib[half:]) - min(self.rss_mib[:half])

    def summary(self) -> str:
        lines = [
            f"seed {self.seed}: {sum(self.calls.values())} calls to {len(self.calls)} RPCs in {self.seconds:.0f} s "
            f"(min {min(self.calls.values(), default=0)}, max {max(self.calls.values(), default=0)} per RPC); "
            f"server memory {min(self.rss_mib, default=0):.0f}-{max(self.rss_mib, default=0):.0f} MiB, "
            f"grew {self.growth_mib:.0f} MiB; {len(self.findings)} findings"
        ]
        total: Counter[str] = Counter()
        for codes in self.codes.values():
            total.update(codes)
        lines.append("status codes: " + ", ".join(f"{code} {n}" for code, n in total.most_common()))
        lines.append("slowest calls: " + ", ".join(f"{rpc} {s:.1f} s" for rpc, s in self.slowest.most_common(5)))
        lines += [f"  {finding}" for finding in self.findings[:50]]
        return "\n".join(lines)


# --- the servers ---------------------------------------------------------------------------------


@dataclass
class Stack:
    process: ServiceProcess
    ports: dict[str, int]
    channels: dict[str, grpc.Channel]
    pool: Pool = field(default_factory=lambda: Pool())

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def alive(self) -> bool:
        return self.process.proc.poll() is None


@contextmanager
def stack(folder: Path) -> Iterator[Stack]:
    """``visionloop up`` on free ports, with the synthetic model loaded in the detector and the fuzz
    project (``ORGANIZATION/PROJECT``) created with a few categories and pictures."""
    from visionloop.testing.synthetic.models import model_zip

    model = model_zip(folder / "stub.zip")
    env = {
        "VISIONLOOP_LOG_LEVEL": "info",
        "DETECTOR_MODEL_PATHS": f"stub={model}",
        "LOOP_ORGANIZATION": NODES_ORGANIZATION,
        "LOOP_PROJECT": NODES_PROJECT,
    }
    args = ("up", "--base-port", "0", "--metrics-port", "-1")
    with visionloop(*args, tmp_path=folder, env=env, ready=None) as process:
        process.wait_for("listening", count=len(SERVICES), timeout=180)  # the trainer imports torch
        ports = process.ports()
        channels = {
            name: grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) for name, port in ports.items()
        }
        try:
            running = Stack(process, ports, channels)
            seed_state(running, running.pool)
            yield running
        finally:
            for channel in channels.values():
                channel.close()


def discover(stack: Stack) -> list[Rpc]:
    """Every RPC of every server, from its server reflection."""
    rpcs = []
    for server, channel in sorted(stack.channels.items()):
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        for service in sorted(database.get_services()):
            descriptor = pool.FindServiceByName(service)
            rpcs += [Rpc(server, service, method) for method in descriptor.methods]
    return rpcs


def seed_state(stack: Stack, pool: Pool) -> None:
    """The fuzz project with categories and a few pictures, so plausible ids lead somewhere."""
    from visionloop.common.v1 import category_pb2, image_pb2
    from visionloop.loop.v1 import (
        image_service_pb2,
        image_service_pb2_grpc,
        project_service_pb2,
        project_service_pb2_grpc,
    )

    channel = stack.channels["loop"]
    ref = project_service_pb2.ProjectRef(organization=ORGANIZATION, project=PROJECT)
    projects = project_service_pb2_grpc.ProjectServiceStub(channel)
    created = projects.CreateProject(
        project_service_pb2.CreateProjectRequest(project=project_service_pb2.Project(ref=ref, display_name="F")),
        timeout=DEADLINE_S,
    )
    pool.harvest(created)
    for name, kind in (("box", 1), ("point", 2), ("mask", 3), ("label", 4)):
        category = category_pb2.Category(name=name, type=kind)  # type: ignore[arg-type]
        answer = projects.CreateCategory(
            project_service_pb2.CreateCategoryRequest(ref=ref, category=category), timeout=DEADLINE_S
        )
        pool.harvest(answer)
    images = image_service_pb2_grpc.ImageServiceStub(channel)
    for data in pictures()[:2]:
        upload = image_service_pb2.ImageUpload(data=data, metadata=image_pb2.ImageMetadata(tags=["seed"]))
        answer = images.UploadImage(image_service_pb2.UploadImageRequest(ref=ref, image=upload), timeout=DEADLINE_S)
        pool.harvest(answer)


def contract_services() -> set[str]:
    """Every service the contracts in protos/ define (the generated code the servers are built from)."""
    import importlib

    import visionloop

    names = set()
    for root in map(Path, visionloop.__path__):  # a namespace package: its v1 folders have no __init__.py
        for path in root.glob("*/v1/*_pb2.py"):
            module = importlib.import_module(f"visionloop.{path.parent.parent.name}.v1.{path.stem}")
            names.update(s.full_name for s in module.DESCRIPTOR.services_by_name.values())
    return names


# --- values --------------------------------------------------------------------------------------


class Pool:
    """Strings worth sending: the fuzz project's ids and every short string seen in an answer, by field name."""

    def __init__(self) -> None:
        self.by_name: dict[str, list[str]] = defaultdict(list)
        self.everything: list[str] = []

    def add(self, name: str, value: str) -> None:
        if not value or len(value) > 200 or value in (NODES_ORGANIZATION, NODES_PROJECT):
            return
        known = self.by_name[name]
        if value not in known and len(known) < 50:
            known.append(value)
            if len(self.everything) < 2000:
                self.everything.append(value)

    def harvest(self, message: Message) -> None:
        for described, value in message.ListFields():
            if described.type == FieldDescriptor.TYPE_STRING:
                for text in value if described.is_repeated else [value]:
                    self.add(described.name, text)
            elif described.type == FieldDescriptor.TYPE_MESSAGE and not L.is_map(described):
                for inner in value if described.is_repeated else [value]:
                    self.harvest(inner)

    def pick(self, rng: random.Random, name: str) -> str | None:
        if self.by_name.get(name) and rng.random() < 0.8:
            return rng.choice(self.by_name[name])
        if self.everything and rng.random() < 0.3:
            return rng.choice(self.everything)
        return None


@cache
def pictures() -> tuple[bytes, ...]:
    """Real pictures: a JPEG, a PNG, a truncated JPEG, and a PNG that claims 144 megapixels."""
    from PIL import Image

    out = []
    for fmt in ("JPEG", "PNG"):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format=fmt)
        out.append(buffer.getvalue())
    out.append(out[0][: len(out[0]) // 2])
    out.append(_bomb_png(12_000, 12_000))
    return tuple(out)


def _bomb_png(width: int, height: int) -> bytes:
    """A grey PNG of ``width`` x ``height`` zero pixels: a few hundred KB that expand to 144 MB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(width + 1)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_FLOATS = (math.nan, math.inf, -math.inf, 1e308, -1e308, 3.4e38, -3.4e38, 1e-45, -0.0, 1e9, -1e9)
_STRINGS = ("", " ", "..", "../../etc/passwd", "%s%n{0}", "'; DROP TABLE images; --", "a/b", "é" * 40, "\U0001f600" * 8)
_NOW = int(time.time())


def _limits(described: FieldDescriptor) -> Any:
    """The limits the servers apply to ``described`` (reflected descriptors carry options the default pool parses)."""
    try:
        return L.of(descriptor_pool.Default().FindFieldByName(described.full_name))
    except KeyError:
        return L.of(described)


class Generator:
    """Builds one request (or request stream) from descriptors."""

    def __init__(self, rng: random.Random, pool: Pool) -> None:
        self.rng = rng
        self.pool = pool
        self.extreme = False
        self.huge = 0  # values of a megabyte or a million entries still allowed in this request
        self.entries = 0  # repeated entries made for this request so far
        self.bytes_made = 0  # bytes values made for this request so far

    def reset(self, extreme: bool = False) -> None:
        """Start a new request: plausible, or extreme with one huge value allowed."""
        self.extreme, self.huge, self.entries, self.bytes_made = extreme, int(extreme), 0, 0

    # messages

    def message(self, descriptor: Descriptor, depth: int = 0) -> Message:
        message = message_factory.GetMessageClass(descriptor)()
        self.fill(message, depth)
        return message

    def fill(self, message: Message, depth: int) -> None:
        descriptor = message.DESCRIPTOR
        if descriptor.full_name == "google.protobuf.Struct":
            self.struct(message, depth)
            return
        chosen_oneofs: dict[str, str] = {}
        for oneof in descriptor.oneofs:
            chosen_oneofs[oneof.name] = self.rng.choice(oneof.fields).name
        for described in descriptor.fields:
            oneof = described.containing_oneof
            if oneof is not None and chosen_oneofs.get(oneof.name) != described.name:
                continue
            if self.rng.random() > (0.7 if depth < 3 else 0.3):
                continue
            # a value the Python runtime refuses to hold (an int beyond the field's type) leaves it unset
            with contextlib.suppress(ValueError, TypeError, OverflowError):
                self.set_field(message, described, depth)

    def set_field(self, message: Message, described: FieldDescriptor, depth: int) -> None:
        limits = _limits(described)
        name = described.name
        if L.is_map(described):
            target = getattr(message, name)
            value_field = described.message_type.fields_by_name["value"]
            key_field = described.message_type.fields_by_name["key"]
            for _ in range(self.count(limits, scalar=False)):
                key = self.scalar(key_field, limits, depth)
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    self.fill(target[key], depth + 1)
                else:
                    target[key] = self.scalar(value_field, limits, depth)
            return
        if described.is_repeated:
            target = getattr(message, name)
            count = self.count(limits, scalar=described.type != FieldDescriptor.TYPE_MESSAGE)
            if described.type == FieldDescriptor.TYPE_MESSAGE:
                for _ in range(count):
                    self.fill(target.add(), depth + 1)
            elif count > ENTRIES:  # a million: one short value many times (quick to build, a few MB)
                extreme, self.extreme = self.extreme, False
                value = self.scalar(described, limits, depth)
                self.extreme = extreme
                target.extend([value[:8] if isinstance(value, str | bytes) else value] * count)
            else:
                target.extend(self.scalar(described, limits, depth) for _ in range(count))
            return
        if described.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 6 and not self.extreme:
                return
            self.fill_special(getattr(message, name), limits, depth + 1)
            return
        setattr(message, name, self.scalar(described, limits, depth))

    def count(self, limits: Any, scalar: bool) -> int:
        """How many entries a repeated field gets: a request holds at most about ``ENTRIES`` in all,
        plus at most one scalar field of a million (the size of a filter that once broke SQLite)."""
        rng = self.rng
        count = rng.choice((0, 1, 1, 2, 3))
        if self.extreme and rng.random() < 0.4:
            most = L.max_items(limits)
            if scalar and self.huge > 0 and most < 1_000_000 and rng.random() < 0.3:
                self.huge -= 1
                return 1_000_000
            count = rng.choice((most, most + 1))
        if self.entries + count > ENTRIES:
            count = rng.choice((0, 1))
        self.entries += count
        return count

    def fill_special(self, message: Message, limits: Any, depth: int) -> None:
        full_name = message.DESCRIPTOR.full_name
        rng = self.rng
        if full_name == "google.protobuf.Timestamp":
            if self.extreme and rng.random() < 0.7:
                message.seconds = rng.choice(
                    (
                        L.MIN_TIMESTAMP_SECONDS - 1,
                        L.MAX_TIMESTAMP_SECONDS + 1,
                        L.MIN_TIMESTAMP_SECONDS,
                        L.MAX_TIMESTAMP_SECONDS,
                        2**62,
                        -(2**62),
                        0,
                    )
                )
                message.nanos = rng.choice((0, -1, 10**9, 2**31 - 1, 999_999_999))
            else:
                message.seconds = _NOW + rng.randint(-(10**7), 10**6)
        elif full_name == "google.protobuf.Duration":
            low, high = L.duration_bounds(limits)
            if self.extreme and rng.random() < 0.7:
                message.seconds = rng.choice(
                    (int(high), int(high) + 1, int(low), int(low) - 1, 315_576_000_001, -315_576_000_000, 10**11, -1)
                )
                message.nanos = rng.choice((0, -1, 999_999_999, -999_999_999, 10**9))
            else:
                message.seconds = rng.randint(0, 2)
                message.nanos = rng.randint(0, 999_999_999)
        else:
            self.fill(message, depth)

    def struct(self, message: Message, depth: int) -> None:
        rng = self.rng
        if self.extreme and rng.random() < 0.3:  # deep
            inner = message
            for _ in range(rng.choice((20, 40, 60))):
                inner = inner.fields["deeper"].struct_value
            inner.fields["leaf"].number_value = rng.choice(_FLOATS)
            return
        keys = rng.choice((0, 1, 3))
        if self.extreme and self.entries < ENTRIES and rng.random() < 0.3:
            keys = rng.choice((1001, 5000))
        self.entries += keys
        for index in range(keys):
            value = message.fields[f"k{index}"]
            kind = rng.random()
            if kind < 0.3:
                value.number_value = rng.choice(_FLOATS) if self.extreme else rng.uniform(0, 100)
            elif kind < 0.5:
                value.string_value = self.text("value", L.MAX_STRING)
            elif kind < 0.6:
                value.bool_value = True
            elif kind < 0.8 and depth < 8 and self.entries < ENTRIES:
                self.struct(value.struct_value, depth + 1)
            else:
                value.list_value.values.add().number_value = rng.uniform(0, 10)

    # scalars

    def scalar(self, described: FieldDescriptor, limits: Any, depth: int) -> Any:
        kind = described.type
        rng = self.rng
        if kind == FieldDescriptor.TYPE_STRING:
            return self.text(described.name, L.max_length(described, limits))
        if kind == FieldDescriptor.TYPE_BYTES:
            return self.blob(L.max_length(described, limits))
        if kind == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if kind in L.FLOATS:
            if self.extreme and rng.random() < 0.6:
                return rng.choice(_FLOATS)
            return rng.choice((rng.random(), rng.uniform(0, 1000), 0.5))
        if kind == FieldDescriptor.TYPE_ENUM:
            numbers = sorted(described.enum_type.values_by_number)
            if self.extreme and rng.random() < 0.5:
                return rng.choice((max(numbers) + 1, -1, 99, 2**31 - 1, -(2**31)))
            return rng.choice(numbers)
        low, high = _INT_RANGES[kind]
        if self.extreme and rng.random() < 0.6:
            return rng.choice((low, high, 0, -1 if low < 0 else 1, high // 2, 2**31 - 1))
        return rng.choice((0, 1, rng.randint(0, 100), rng.randint(0, 10_000), max(low, -5)))

    def text(self, name: str, limit: int) -> str:
        rng = self.rng
        if self.extreme and rng.random() < 0.5:
            if self.huge > 0 and rng.random() < 0.2:
                self.huge -= 1
                return "i" * 1_000_000
            return rng.choice(
                ("x" * (limit + 1), "x" * limit, "nul\x00inside", "\U0001f600" * (limit + 1), rng.choice(_STRINGS))
            )
        known = self.pool.pick(rng, name)
        if known is not None:
            return known
        if rng.random() < 0.3:
            return rng.choice(_STRINGS)
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_."
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))

    def blob(self, limit: int) -> bytes:
        rng = self.rng
        choice = rng.random()
        if self.bytes_made > BYTES:
            return rng.randbytes(rng.choice((0, 1, 16)))
        if choice < 0.4:
            picture = rng.choice(pictures())
            self.bytes_made += len(picture)
            return picture
        if self.extreme and choice < 0.7 and self.huge > 0:
            self.huge -= 1
            data = rng.choice((bytes(limit + 1) if limit < 64 * 1024 * 1024 else b"", rng.randbytes(2_000_000), b""))
            self.bytes_made += len(data)
            return data
        return rng.randbytes(rng.choice((0, 1, 16, 300)))

    # wire bytes

    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        data = bytearray(data or b"\x00")
        for _ in range(rng.randint(1, 4)):
            data = data or bytearray(b"\x00")
            action = rng.random()
            at = rng.randrange(len(data))
            if action < 0.4:
                data[at] = rng.randrange(256)
            elif action < 0.6:
                del data[at:]
            elif action < 0.8:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
            else:
                data[at:at] = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"  # a varint at the edge
        return bytes(data)

    def request(self, descriptor: Descriptor) -> tuple[str, bytes]:
        """One request message on the wire, and which kind of case it is."""
        rng = self.rng
        roll = rng.random()
        self.reset()
        if roll < 0.08:
            return "empty", b""
        if roll < 0.18:
            return "random bytes", rng.randbytes(rng.choice((1, 7, 64, 4096)))
        if roll < 0.33:
            return "mutated", self.mutate(self.message(descriptor).SerializeToString())
        if roll < 0.63:
            self.reset(extreme=True)
            try:
                return "extreme", self.message(descriptor).SerializeToString()
            except EncodeError:  # nested beyond what protobuf encodes: the parse-depth case, as bytes
                return "too deep", _nested(200)
        return "plausible", self.message(descriptor).SerializeToString()

    def stream(self, descriptor: Descriptor) -> tuple[str, list[bytes]]:
        """A request stream: a chunked transfer (often lying), or a few messages of any kind."""
        rng = self.rng
        if _transfer_fields(descriptor) and rng.random() < 0.5:
            return self.transfer(descriptor)
        cases, messages = [], []
        for _ in range(rng.choice((0, 1, 2, 3, 5))):
            case, data = self.request(descriptor)
            cases.append(case)
            messages.append(data)
        return "stream of " + (", ".join(cases) or "nothing"), messages

    def transfer(self, descriptor: Descriptor) -> tuple[str, list[bytes]]:
        """A header naming a payload, then its chunks; sometimes with a wrong size, checksum or offset."""
        rng = self.rng
        header_field, chunk_field = _transfer_fields(descriptor)
        payload = rng.choice((*pictures()[:2], rng.randbytes(rng.choice((0, 10, 300_000)))))
        self.reset()
        first = self.message(descriptor)
        header = getattr(first, header_field.name)
        self.fill(header, 1)
        blob = _blob_header(header)
        lie = rng.choice(("none", "none", "size", "sha256", "offset", "garbage", "early end", "two headers"))
        if blob is not None:
            blob.size_bytes = len(payload) + (rng.choice((-1, 1, 10**12, -(10**6))) if lie == "size" else 0)
            digest = hashlib.sha256(payload).hexdigest()
            blob.sha256 = ("0" * 64) if lie == "sha256" else digest
        messages = [first.SerializeToString()]
        step = rng.choice((1024 * 1024, 100_000, 4096))
        chunks = [payload[at : at + step] for at in range(0, len(payload), step)] or [b""]
        offset = 0
        for data in chunks:
            message = message_factory.GetMessageClass(descriptor)()
            chunk = getattr(message, chunk_field.name)
            chunk.offset = offset + (rng.choice((-1, 7)) if lie == "offset" else 0)
            chunk.data = data
            offset += len(data)
            messages.append(message.SerializeToString())
        if lie == "garbage":
            messages.insert(rng.randint(1, len(messages)), rng.randbytes(rng.choice((3, 64))))
        elif lie == "early end":
            messages = messages[: max(1, len(messages) // 2)]
        elif lie == "two headers":
            messages.append(messages[0])
        return f"transfer ({lie})", messages


def _nested(depth: int) -> bytes:
    """Field 1 holding field 1 holding ... ``depth`` times: deeper than any parser accepts."""
    data = b""
    for _ in range(depth):
        data = b"\x0a" + _varint(len(data)) + data
    return data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _transfer_fields(descriptor: Descriptor) -> tuple[FieldDescriptor, FieldDescriptor] | tuple[()]:
    """The (header, chunk) fields of a chunked-transfer request (``oneof part { header; chunk }``)."""
    chunk = next((f for f in descriptor.fields if f.message_type and f.message_type.name == "BlobChunk"), None)
    header = next((f for f in descriptor.fields if f.message_type and f.name == "header"), None)
    return (header, chunk) if chunk is not None and header is not None else ()


def _blob_header(message: Message) -> Any:
    if message.DESCRIPTOR.name == "BlobHeader":
        return message
    for described in message.DESCRIPTOR.fields:
        if described.message_type is not None and described.message_type.name == "BlobHeader":
            return getattr(message, described.name)
    return None


# --- calls ---------------------------------------------------------------------------------------


class Fuzzer:
    def __init__(self, stack: Stack, seed: int, report: Report) -> None:
        self.stack = stack
        self.seed = seed
        self.report = report
        self.pool = stack.pool

    def call(self, rpc: Rpc, index: int) -> None:
        rng = random.Random(f"{self.seed}/{rpc.server}/{rpc.name}/{index}")
        generator = Generator(rng, self.pool)
        method = rpc.method
        response_class = message_factory.GetMessageClass(method.output_type)
        channel = self.stack.channels[rpc.server]
        timeout = OPEN_ENDED_S if rpc.open_ended else DEADLINE_S
        if method.client_streaming:
            case, messages = generator.stream(method.input_type)
        else:
            case, single = generator.request(method.input_type)
        answers: list[bytes] = []
        started = time.monotonic()
        code = grpc.StatusCode.OK
        details = ""
        try:
            if method.client_streaming and method.server_streaming:
                answers = list(channel.stream_stream(rpc.path)(iter(messages), timeout=timeout))
            elif method.client_streaming:
                answers = [channel.stream_unary(rpc.path)(iter(messages), timeout=timeout)]
            elif method.server_streaming:
                answers = list(channel.unary_stream(rpc.path)(single, timeout=timeout))
            else:
                answers = [channel.unary_unary(rpc.path)(single, timeout=timeout)]
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
        key = f"{rpc.server}:{rpc.name}"
        self.report.calls[key] += 1
        self.report.codes[key][code.name] += 1
        self.report.slowest[key] = max(self.report.slowest[key], time.monotonic() - started)

        def found(problem: str) -> None:
            self.report.findings.append(Finding(f"{rpc.server}:{rpc.name}", index, case, problem))

        if code in FAULTS:
            found(f"{code.name}: {details[:300]}")
        elif code is grpc.StatusCode.DEADLINE_EXCEEDED and not rpc.open_ended:
            found(f"no answer within {timeout:.0f} s (a hang)")
        elif code is grpc.StatusCode.CANCELLED:
            found(f"CANCELLED by the server: {details[:300]}")
        if len(details) > MAX_DETAILS:
            found(f"status message of {len(details)} characters: {details[:100]!r}...")
        if code is grpc.StatusCode.UNAVAILABLE and not self.stack.alive():
            found("the server process died")
        for raw in answers[:1000]:
            answer = response_class.FromString(raw)
            if getattr(answer, "error_code", 0) in FAULT_VALUES:
                found(f"an answer in the stream says {answer.error_code}: {answer.error_message[:300]}")  # type: ignore[attr-defined]
            self.pool.harvest(answer)


def log_findings(stack: Stack, since: tuple[int, int]) -> list[Finding]:
    """Over-long lines and stack traces the servers logged since ``log_position``."""
    findings = []
    for line in stack.process.raw[since[0] :]:
        if len(line) > MAX_LOG_LINE:
            findings.append(Finding("log", 0, "", f"a log line of {len(line)} characters: {line[:200]}"))
    for record in stack.process.lines[since[1] :]:
        if "exception" in record:
            where = record.get("rpc", record.get("logger", "?"))
            findings.append(
                Finding(
                    "log", 0, "", f"stack trace logged ({where}: {record.get('event')}): {record['exception'][-600:]}"
                )
            )
    return findings


def log_position(stack: Stack) -> tuple[int, int]:
    return len(stack.process.raw), len(stack.process.lines)


def run(
    stack: Stack,
    rpcs: list[Rpc],
    *,
    seed: int,
    calls_per_rpc: int | None = None,
    seconds: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Fuzz ``rpcs`` round-robin: ``calls_per_rpc`` each, or until ``seconds`` ran out."""
    report = Report(seed)
    fuzzer = Fuzzer(stack, seed, report)
    logged = log_position(stack)
    started = time.monotonic()
    index = 0
    while True:
        if calls_per_rpc is not None and index >= calls_per_rpc:
            break
        if seconds is not None and time.monotonic() - started > seconds:
            break
        for rpc in rpcs:
            fuzzer.call(rpc, index)
            if not stack.alive():
                report.findings.append(Finding(rpc.name, index, "", "the server process died"))
                break
        if not stack.alive():
            break
        report.rss_mib.append(stack.rss_mib())
        index += 1
        if progress is not None and index % 5 == 0:
            progress(
                f"round {index}: {sum(report.calls.values())} calls, {len(report.findings)} findings, "
                f"server {stack.rss_mib():.0f} MiB"
            )
    report.seconds = time.monotonic() - started
    report.findings += log_findings(stack, logged)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz every RPC of every VisionLoop service (visionloop up).")
    parser.add_argument("--seconds", type=float, default=600, help="how long to fuzz (default 600)")
    parser.add_argument("--seed", type=int, default=1, help="seed; a finding names the index that reproduces it")
    parser.add_argument("--only", default="", help="fuzz only RPCs whose name contains this")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="visionloop-fuzz-") as folder, stack(Path(folder)) as running:
        rpcs = [rpc for rpc in discover(running) if args.only in rpc.name]
        print(f"fuzzing {len(rpcs)} RPCs on {len(running.ports)} servers for {args.seconds:.0f} s, seed {args.seed}")
        report = run(running, rpcs, seed=args.seed, seconds=args.seconds, progress=print)
        print(report.summary())
        return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())

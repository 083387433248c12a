"""Request inputs through system shared memory, for a detector on the same host as Triton.

A 640x640 float32 frame is 4.9 MB. Sent inside the gRPC request it is copied by the client's
serialiser, the transport and Triton's request parser before the model sees it; measured on two
cores that made a lone request 3-4x slower than the model itself. Through a POSIX shared-memory
region registered with Triton (its system shared-memory API) the request carries only the
region's name and the bytes are written once.

One region per batch in flight, each large enough for a full batch; a call takes a free region,
writes its batch, infers and puts the region back. Regions are unregistered and unlinked on close.
Their names start with ``visionloop-<owner>-`` (the owner is the detector's node id), so a detector
killed before it could close them removes its leftovers at its next start (``sweep``): otherwise
each crash would leave hundreds of MB in /dev/shm, mapped by Triton.
"""

from __future__ import annotations

import asyncio
import ipaddress
import queue
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc.aio as aioclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from visionloop.runtime.logging import get_logger

log = get_logger(__name__)

RPC_TIMEOUT_S = 10.0


def is_loopback(url: str) -> bool:
    """Whether the Triton gRPC address ``host:port`` names this machine (so /dev/shm is shared)."""
    host = url.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Region:
    name: str  # the name Triton knows it by (also its /dev/shm key, with a leading slash)
    handle: shm.SharedMemoryRegion
    byte_size: int

    def write(self, frames: Sequence[np.ndarray]) -> int:
        """Stack float32 ``frames`` (a batch, or per-frame tensors) into the region; returns the bytes written."""
        shape = (len(frames), *frames[0].shape)
        nbytes = int(np.prod(shape)) * np.dtype(np.float32).itemsize
        if nbytes > self.byte_size:
            raise ValueError(f"batch of {nbytes} bytes does not fit region {self.name} ({self.byte_size} bytes)")
        view = shm.get_contents_as_numpy(self.handle, np.float32, shape)
        try:
            np.stack(frames, out=view)  # the only copy the frames see on their way to Triton
        finally:
            del view  # a live view would keep the mapping from being closed
        return nbytes


class InputRegions:
    """A pool of registered input regions; ``take``/``give`` from worker threads."""

    def __init__(self, regions: list[Region]) -> None:
        self.regions = regions
        self.byte_size = regions[0].byte_size
        self._free: queue.SimpleQueue[Region] = queue.SimpleQueue()
        for region in regions:
            self._free.put(region)

    @classmethod
    async def register(
        cls, client: aioclient.InferenceServerClient, count: int, byte_size: int, owner: str = ""
    ) -> InputRegions:
        """Create ``count`` regions of ``byte_size`` bytes and register them with the server; raises
        InferenceServerException when the server cannot open them (it runs on another machine)."""
        prefix = f"{owner_prefix(owner or uuid.uuid4().hex[:12])}{uuid.uuid4().hex[:8]}"
        regions: list[Region] = []
        try:
            for index in range(count):
                name = f"{prefix}-{index}"
                handle = shm.create_shared_memory_region(name, f"/{name}", byte_size, create_only=True)
                regions.append(Region(name, handle, byte_size))
                await client.register_system_shared_memory(name, f"/{name}", byte_size, client_timeout=RPC_TIMEOUT_S)
        except BaseException:
            await _release(client, regions)
            raise
        return cls(regions)

    def take(self) -> Region:
        return self._free.get()

    def give(self, region: Region) -> None:
        self._free.put(region)

    async def close(self, client: aioclient.InferenceServerClient) -> None:
        await _release(client, self.regions)


def owner_prefix(owner: str) -> str:
    """The name prefix of every region ``owner`` creates (no other owner's names start with it)."""
    return f"visionloop-{''.join(c for c in owner if c.isalnum())[:32]}-"


async def sweep(url: str, owner: str, shm_dir: Path = Path("/dev/shm")) -> int:
    """Unregister from the Triton at ``url`` and unlink every region ``owner`` left behind (a detector
    that was killed); returns how many there were. Call before this owner creates regions."""
    prefix = owner_prefix(owner)
    client = aioclient.InferenceServerClient(url)
    try:
        status = await client.get_system_shared_memory_status(as_json=True, client_timeout=RPC_TIMEOUT_S)
        names = {r["name"] for r in status.get("regions", {}).values() if r.get("name", "").startswith(prefix)}
        for name in names:
            with suppress(InferenceServerException):
                await client.unregister_system_shared_memory(name, client_timeout=RPC_TIMEOUT_S)
    finally:
        await client.close()
    left = names | set(await asyncio.to_thread(_unlink_matching, shm_dir, prefix))
    if left:
        log.info("removed shared-memory regions a previous run left behind", regions=len(left), owner=owner)
    return len(left)


def _unlink_matching(folder: Path, prefix: str) -> list[str]:
    removed = []
    for path in folder.glob(f"{prefix}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


async def _release(client: aioclient.InferenceServerClient, regions: list[Region]) -> None:
    for region in regions:
        with suppress(InferenceServerException):
            await client.unregister_system_shared_memory(region.name, client_timeout=RPC_TIMEOUT_S)
        with suppress(Exception):  # already gone: nothing to free
            shm.destroy_shared_memory_region(region.handle)

"""Receiving chunked uploads, shared by model and dataset uploads."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from visionloop.common.v1 import transfer_pb2
from visionloop.runtime.errors import DataLoss, InvalidArgument

MIB = 1024**2
WRITE_BATCH_BYTES = 8 * MIB  # spool writes leave the event loop in batches of this size
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ChunkedRequest(Protocol):
    """A request message with ``oneof part { header; chunk }``."""

    chunk: transfer_pb2.BlobChunk

    def WhichOneof(self, name: str) -> str | None: ...


def check_sha256(value: str, field: str = "header.blob.sha256") -> None:
    if not _SHA256.match(value.lower()):
        raise InvalidArgument(f"{field} must be the file's hex sha256 (64 characters)")


def _write_batch(out: BinaryIO, digest: Any, blocks: list[bytes]) -> None:
    for block in blocks:
        digest.update(block)  # hashlib releases the GIL for large blocks
    out.writelines(blocks)


async def receive_chunks(
    requests: AsyncIterator[ChunkedRequest], blob: transfer_pb2.BlobHeader, path: Path, what: str = "file"
) -> None:
    """Spool the chunks after the header to ``path``; DATA_LOSS unless size and sha256 match ``blob``."""
    digest = hashlib.sha256()
    received = 0
    batch: list[bytes] = []
    batch_bytes = 0
    with path.open("wb") as out:
        async for message in requests:
            if message.WhichOneof("part") != "chunk":
                raise InvalidArgument("only chunks may follow the header; the header was sent twice")
            chunk = message.chunk
            if chunk.offset != received:
                raise InvalidArgument(
                    f"chunk offset {chunk.offset} does not match the {received} bytes received so far; "
                    "send chunks in order"
                )
            received += len(chunk.data)
            if received > blob.size_bytes:
                raise DataLoss(
                    f"expected {blob.size_bytes} bytes (header.blob.size_bytes) but received at least {received}"
                )
            batch.append(chunk.data)
            batch_bytes += len(chunk.data)
            if batch_bytes >= WRITE_BATCH_BYTES:
                await asyncio.to_thread(_write_batch, out, digest, batch)
                batch, batch_bytes = [], 0
        await asyncio.to_thread(_write_batch, out, digest, batch)
    if received != blob.size_bytes:
        raise DataLoss(f"expected {blob.size_bytes} bytes but received {received}; send the {what} again")
    if digest.hexdigest() != blob.sha256.lower():
        raise DataLoss(
            f"sha256 mismatch: expected {blob.sha256.lower()}, got {digest.hexdigest()}; "
            f"the {what} was corrupted in transit, send it again"
        )


def hash_file(path: Path, chunk_bytes: int = MIB) -> tuple[str, int]:
    """The file's hex sha256 and size, read in chunks (blocking)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as source:
        while block := source.read(chunk_bytes):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size

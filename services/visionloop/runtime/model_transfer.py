"""Model zips between a node and the hub over grpc.aio: chunked, checked by sha256 both ways.

Shared by the nodes that move models (the detector downloads, the converter downloads and uploads).
File reads, writes and hashing happen a chunk at a time, so a model of any size never sits in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from visionloop.client.loop import file_digest
from visionloop.common.v1 import model_pb2, transfer_pb2
from visionloop.loop.v1 import model_service_pb2 as pb
from visionloop.loop.v1 import model_service_pb2_grpc

CHUNK_BYTES = 1024**2  # the transfer contract's recommended chunk size


async def download_model(
    stub: model_service_pb2_grpc.ModelServiceStub,
    key: pb.ModelKey,
    fmt: str,
    destination: Path,
    rpc_seconds: float = 600.0,
) -> str:
    """Write the zip of ``key`` in ``fmt`` to ``destination``; returns its sha256. OSError when the bytes
    do not match the hub's sha256 (or the disk is full); grpc errors pass through. A failed download
    leaves no file."""
    digest, expected = hashlib.sha256(), ""
    request = pb.DownloadModelRequest(key=key, format=fmt)
    try:
        with destination.open("wb") as out:
            async for message in stub.DownloadModel(request, timeout=rpc_seconds):
                if message.HasField("header"):
                    expected = message.header.sha256
                else:
                    out.write(message.chunk.data)
                    digest.update(message.chunk.data)
        if digest.hexdigest() != expected:
            raise OSError(f"model {key.version} ({fmt}) arrived corrupted (sha256 {digest.hexdigest()} != {expected})")
    except BaseException:  # cancelled too: unlinked at once, with no await a second cancel could cut short
        destination.unlink(missing_ok=True)  # noqa: ASYNC240
        raise
    return expected


async def upload_model(
    stub: model_service_pb2_grpc.ModelServiceStub,
    header: pb.UploadModelHeader,
    path: Path,
    rpc_seconds: float = 600.0,
) -> model_pb2.ModelInfo:
    """Upload the zip at ``path`` under ``header`` (its blob size and sha256 are filled in here)."""
    sha256, size = await asyncio.to_thread(file_digest, path)
    opened = pb.UploadModelHeader()
    opened.CopyFrom(header)
    opened.blob.CopyFrom(
        transfer_pb2.BlobHeader(name=path.name, content_type="application/zip", size_bytes=size, sha256=sha256)
    )

    async def requests() -> AsyncIterator[pb.UploadModelRequest]:
        yield pb.UploadModelRequest(header=opened)
        offset = 0
        with path.open("rb") as src:
            while data := src.read(CHUNK_BYTES):
                yield pb.UploadModelRequest(chunk=transfer_pb2.BlobChunk(offset=offset, data=data))
                offset += len(data)

    response = await stub.UploadModel(requests(), timeout=rpc_seconds)
    return response.model

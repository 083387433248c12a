"""The real CPU ``tritonserver`` the tests start: ``visionloop.detector.triton_server``, with test names
for its shared-memory regions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from visionloop.detector import triton_server
from visionloop.detector.triton_server import HOST, TritonStartError, free_port

__all__ = ["HOST", "TritonServer", "TritonStartError", "free_port"]


class TritonServer(triton_server.TritonServer):
    def __init__(self, repository: Path | str, workdir: Path, environment: Mapping[str, str] | None = None) -> None:
        super().__init__(repository, workdir, shm_prefix="visionloop-test-", environment=environment)

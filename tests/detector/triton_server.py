"""The real CPU ``tritonserver`` the tests start: ``visionloop.testing.triton``, with test names
for its shared-memory regions."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from visionloop.testing import triton as triton_server
from visionloop.testing.ports import free_port
from visionloop.testing.triton import HOST, TritonStartError

__all__ = ["HOST", "TritonServer", "TritonStartError", "free_port"]


class TritonServer(triton_server.TritonServer):
    def __init__(self, repository: Path | str, workdir: Path, environment: Mapping[str, str] | None = None) -> None:
        super().__init__(repository, workdir, shm_prefix="visionloop-test-", environment=environment)

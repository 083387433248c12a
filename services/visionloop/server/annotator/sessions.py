"""Interactive sessions: one image, its prepared backend and the prompt history.

Each click and each box is one prompt; the effective box is the latest one, so undoing a box
brings the earlier box back. A request that the backend cannot turn into a proposal leaves the
session as it was.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

from visionloop.annotator.v1 import annotator_service_pb2 as pb
from visionloop.loop.v1 import project_service_pb2
from visionloop.runtime import access
from visionloop.runtime.errors import NotFound
from visionloop.server.annotator import masks
from visionloop.server.annotator.classical import Result
from visionloop.server.annotator.prompts import Item, Prompts

MAX_SESSIONS = 64


class PreparedImage(Protocol):
    """A backend's per-image state (e.g. SAM's embedding); ``segment`` is blocking."""

    name: str

    def segment(self, prompts: Prompts) -> Result: ...


@dataclass
class Session:
    id: str
    ref: project_service_pb2.ProjectRef
    image_id: str
    tool: int
    width: int
    height: int
    prepared: PreparedImage
    items: list[Item] = field(default_factory=list)
    category_id: str = ""
    result: Result | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def proposal(self) -> pb.Proposal | None:
        if self.result is None:
            return None
        mask = self.result.mask
        return pb.Proposal(
            polygon=masks.polygon(mask),
            mask=masks.encode_rle(mask),
            box=masks.box(mask),
            point=masks.centre(mask),
            score=self.result.score,
        )


class Sessions:
    """Open sessions, the least recently used dropped beyond ``limit``."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self._open: OrderedDict[str, Session] = OrderedDict()

    def add(self, **values: object) -> Session:
        session = Session(id=uuid.uuid4().hex, **values)  # type: ignore[arg-type]
        self._open[session.id] = session
        while len(self._open) > self.limit:
            self._open.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session:
        session = self._open.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id!r} is not open (closed, expired or never opened); open a new one")
        access.check_project(session.ref.organization, session.ref.project)  # the caller's token may be limited
        self._open.move_to_end(session_id)
        return session

    def close(self, session_id: str) -> None:
        self.get(session_id)
        del self._open[session_id]

    def __len__(self) -> int:
        return len(self._open)

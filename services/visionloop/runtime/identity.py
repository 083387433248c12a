"""A node's stable id: made once, kept in its data folder, so a restart is the same node to the hub."""

from __future__ import annotations

import uuid
from pathlib import Path

from visionloop.runtime.files import write_atomically


def node_id(data_dir: Path, kind: str) -> str:
    """The id in ``data_dir/node_id``, created as ``<kind>-<uuid4>`` on first use."""
    path = data_dir / "node_id"
    if path.is_file() and (value := path.read_text().strip()):
        return value
    value = f"{kind}-{uuid.uuid4()}"
    write_atomically(path, value.encode())  # never an empty id file that a full disk left half-written
    return value

"""A node's stable id: made once, kept in its data folder, so a restart is the same node to the hub."""

from __future__ import annotations

import uuid
from pathlib import Path


def node_id(data_dir: Path, kind: str) -> str:
    """The id in ``data_dir/node_id``, created as ``<kind>-<uuid4>`` on first use."""
    path = data_dir / "node_id"
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    value = f"{kind}-{uuid.uuid4()}"
    path.write_text(value)
    return value

"""Which hub annotations each Label Studio annotation wrote, so that webhooks map one to one.

Label Studio names its annotations by number and each region of one by a short id; a delete
webhook carries only annotation numbers. The bridge keeps, per Label Studio annotation, its task,
hub image and the hub annotation of each region in a SQLite file in the annotator's data folder.
Calls are blocking (run them off the event loop).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS annotations (
    instance TEXT NOT NULL,
    annotation INTEGER NOT NULL,
    task INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    PRIMARY KEY (instance, annotation)
);
CREATE TABLE IF NOT EXISTS regions (
    instance TEXT NOT NULL,
    annotation INTEGER NOT NULL,
    region TEXT NOT NULL,
    hub_id TEXT NOT NULL,
    PRIMARY KEY (instance, annotation, region)
);
"""


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def regions(self, instance: str, annotation: int) -> dict[str, str]:
        """The hub annotation of each region the annotation wrote (region id -> hub id)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT region, hub_id FROM regions WHERE instance = ? AND annotation = ?", (instance, annotation)
            ).fetchall()
        return dict(rows)

    def image(self, instance: str, annotation: int) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT image_id FROM annotations WHERE instance = ? AND annotation = ?", (instance, annotation)
            ).fetchone()
        return row[0] if row else None

    def of_tasks(self, instance: str, tasks: list[int]) -> list[int]:
        """The annotations recorded for these tasks."""
        with self._lock:
            marks = ",".join("?" * len(tasks))
            rows = self._db.execute(
                f"SELECT annotation FROM annotations WHERE instance = ? AND task IN ({marks})",
                (instance, *tasks),
            ).fetchall()
        return [row[0] for row in rows]

    def others_on_image(self, instance: str, annotation: int, image_id: str) -> int:
        """How many other Label Studio annotations of this instance label the image."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM annotations WHERE instance = ? AND image_id = ? AND annotation != ?",
                (instance, image_id, annotation),
            ).fetchone()
        return int(row[0])

    def save(self, instance: str, annotation: int, task: int, image_id: str, regions: dict[str, str]) -> None:
        """Record the annotation's regions as they now stand on the hub (replacing what was recorded)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO annotations (instance, annotation, task, image_id) VALUES (?, ?, ?, ?)",
                (instance, annotation, task, image_id),
            )
            self._db.execute("DELETE FROM regions WHERE instance = ? AND annotation = ?", (instance, annotation))
            self._db.executemany(
                "INSERT INTO regions (instance, annotation, region, hub_id) VALUES (?, ?, ?, ?)",
                [(instance, annotation, region, hub_id) for region, hub_id in regions.items()],
            )

    def forget(self, instance: str, annotation: int) -> None:
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM annotations WHERE instance = ? AND annotation = ?", (instance, annotation))
            self._db.execute("DELETE FROM regions WHERE instance = ? AND annotation = ?", (instance, annotation))

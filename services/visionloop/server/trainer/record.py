"""A training as the trainer persists it: written after every step, read back after a crash.

One JSON file per training, ``<data>/trainings/<id>/training.json``, replaced atomically
(temporary file, fsync, rename) so a ``kill -9`` leaves either the old or the new record.
The hub's view (``Training`` with its status) is kept as serialized protobuf (base64): any
training the hub hands out can be written, NaN hyperparameters included, which protobuf JSON
refuses. The rest is what only the trainer needs to resume without repeating side effects
(which formats went out and as which version, how many detection batches the hub has) and to
stop a training that keeps taking the trainer down (``crashes``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from visionloop.common.v1 import training_pb2
from visionloop.runtime.files import write_atomically

RECORD = "training.json"


@dataclass
class TrainingRecord:
    training: training_pb2.Training
    folder: Path
    uploaded: dict[str, str] = field(default_factory=dict)  # format -> version on the hub
    detection_batches: int = 0  # batches written by the detecting step
    detection_batches_uploaded: int = 0
    end: str = ""  # "stop" or "abort" once requested; sticks across restarts
    failure: str = ""  # the critical error that ends the training
    crashes: int = 0  # runs that began and never left cleanly (the process died) since the last progress

    @property
    def id(self) -> str:
        return self.training.id

    @property
    def status(self) -> training_pb2.TrainingStatus:
        return self.training.status

    @property
    def state(self) -> training_pb2.TrainingState:
        return self.training.status.state

    @property
    def result_version(self) -> str:
        return next(iter(self.uploaded.values()), "")

    def save(self) -> None:
        doc: dict[str, Any] = {
            "training_pb": base64.b64encode(self.training.SerializeToString()).decode(),
            "uploaded": self.uploaded,
            "detection_batches": self.detection_batches,
            "detection_batches_uploaded": self.detection_batches_uploaded,
            "end": self.end,
            "failure": self.failure,
            "crashes": self.crashes,
        }
        write_atomically(self.folder / RECORD, json.dumps(doc, indent=1).encode())

    @classmethod
    def load(cls, folder: Path) -> TrainingRecord:
        doc = json.loads((folder / RECORD).read_text())
        if "training_pb" in doc:
            training = training_pb2.Training.FromString(base64.b64decode(doc["training_pb"], validate=True))
        else:  # written by a trainer before the binary form
            training = json_format.ParseDict(doc["training"], training_pb2.Training())
        return cls(
            training=training,
            folder=folder,
            uploaded=dict(doc.get("uploaded", {})),
            detection_batches=int(doc.get("detection_batches", 0)),
            detection_batches_uploaded=int(doc.get("detection_batches_uploaded", 0)),
            end=str(doc.get("end", "")),
            failure=str(doc.get("failure", "")),
            crashes=int(doc.get("crashes", 0)),
        )


def readable(folder: Path) -> TrainingRecord | None:
    """The record in ``folder``; None when there is none or it cannot be read."""
    try:
        return TrainingRecord.load(folder)
    except (OSError, ValueError, KeyError, DecodeError, json_format.ParseError):  # binascii.Error is a ValueError
        return None


def unfinished(root: Path) -> list[TrainingRecord]:
    """Trainings under ``root`` that a previous run left unfinished, oldest first."""
    paths = sorted(root.glob(f"*/{RECORD}"), key=lambda p: p.stat().st_mtime)
    # unreadable ones are left out: the caller's cleanup removes their folders
    return [record for path in paths if (record := readable(path.parent)) is not None]

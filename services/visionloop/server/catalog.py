"""The catalog of VisionLoop services: name, implementation module and well-known ports.

Modules are imported only when a service runs, so ``visionloop --help`` stays fast and the
light services never import the trainer's heavy dependencies.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from visionloop.runtime.config import ServiceSettings
from visionloop.runtime.server import ServiceSpec


class ServiceModule(Protocol):
    SETTINGS: type[ServiceSettings]

    def create(self, settings: ServiceSettings) -> ServiceSpec: ...


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    summary: str
    module: str
    grpc_port: int
    metrics_port: int

    def load(self) -> ServiceModule:
        return importlib.import_module(self.module)


SERVICES: dict[str, ServiceEntry] = {
    entry.name: entry
    for entry in (
        ServiceEntry(
            "loop", "hub: projects, images, annotations, models, trainings", "visionloop.server.hub.app", 50051, 9091
        ),
        ServiceEntry("detector", "inference for robots", "visionloop.server.detector.app", 50052, 9092),
        ServiceEntry("trainer", "trains the next model", "visionloop.server.trainer.app", 50053, 9093),
        ServiceEntry(
            "converter", "turns models into deployable formats", "visionloop.server.converter.app", 50054, 9094
        ),
        ServiceEntry("annotator", "interactive annotation and ranking", "visionloop.server.annotator.app", 50055, 9095),
    )
}

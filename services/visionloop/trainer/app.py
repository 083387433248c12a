"""The trainer service: mounts TrainerService.

The contract is complete; the implementation arrives with issue [4], until then its RPCs
answer UNIMPLEMENTED through the standard runtime.
"""

from __future__ import annotations

from visionloop.runtime.server import Mount, ServiceSpec
from visionloop.trainer.config import TrainerSettings
from visionloop.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc

SETTINGS = TrainerSettings


def create(settings: TrainerSettings) -> ServiceSpec:
    servicer = trainer_service_pb2_grpc.TrainerServiceServicer()
    mount = Mount.generated(servicer, trainer_service_pb2_grpc, trainer_service_pb2, "TrainerService")
    return ServiceSpec(name="trainer", mounts=[mount])

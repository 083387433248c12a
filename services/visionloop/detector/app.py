"""The detector service: mounts DetectorService.

The contract is complete; the implementation arrives with issue [3], until then its RPCs
answer UNIMPLEMENTED through the standard runtime.
"""

from __future__ import annotations

from visionloop.detector.config import DetectorSettings
from visionloop.detector.v1 import detector_service_pb2, detector_service_pb2_grpc
from visionloop.runtime.server import Mount, ServiceSpec

SETTINGS = DetectorSettings


def create(settings: DetectorSettings) -> ServiceSpec:
    servicer = detector_service_pb2_grpc.DetectorServiceServicer()
    mount = Mount.generated(servicer, detector_service_pb2_grpc, detector_service_pb2, "DetectorService")
    return ServiceSpec(name="detector", mounts=[mount])

"""The annotator service: mounts AnnotatorService.

The contract is complete; the implementation arrives with issue [6], until then its RPCs
answer UNIMPLEMENTED through the standard runtime.
"""

from __future__ import annotations

from visionloop.annotator.config import AnnotatorSettings
from visionloop.annotator.v1 import annotator_service_pb2, annotator_service_pb2_grpc
from visionloop.runtime.server import Mount, ServiceSpec

SETTINGS = AnnotatorSettings


def create(settings: AnnotatorSettings) -> ServiceSpec:
    servicer = annotator_service_pb2_grpc.AnnotatorServiceServicer()
    mount = Mount.generated(servicer, annotator_service_pb2_grpc, annotator_service_pb2, "AnnotatorService")
    return ServiceSpec(name="annotator", mounts=[mount])

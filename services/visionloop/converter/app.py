"""The converter service: mounts ConverterService.

The contract is complete; the implementation arrives with issue [5], until then its RPCs
answer UNIMPLEMENTED through the standard runtime.
"""

from __future__ import annotations

from visionloop.converter.config import ConverterSettings
from visionloop.converter.v1 import converter_service_pb2, converter_service_pb2_grpc
from visionloop.runtime.server import Mount, ServiceSpec

SETTINGS = ConverterSettings


def create(settings: ConverterSettings) -> ServiceSpec:
    servicer = converter_service_pb2_grpc.ConverterServiceServicer()
    mount = Mount.generated(servicer, converter_service_pb2_grpc, converter_service_pb2, "ConverterService")
    return ServiceSpec(name="converter", mounts=[mount])

"""TrainerService: what the node can train, hyperparameter checks, local stop and abort."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from visionloop.common.v1 import node_pb2
from visionloop.lib.hyperparameters import from_struct, to_struct
from visionloop.runtime.errors import FailedPrecondition
from visionloop.server.trainer.machine import TrainingMachine
from visionloop.server.trainer.plugin import TrainerPlugin
from visionloop.trainer.v1 import trainer_service_pb2 as pb
from visionloop.trainer.v1 import trainer_service_pb2_grpc


class TrainerServicer(trainer_service_pb2_grpc.TrainerServiceServicer):
    def __init__(
        self,
        plugin: TrainerPlugin,
        machine: Callable[[], TrainingMachine | None],
        node_status: Callable[[], node_pb2.NodeStatus],
    ) -> None:
        self.plugin = plugin
        self.machine = machine
        self.node_status = node_status

    async def GetTrainerStatus(
        self, request: pb.GetTrainerStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetTrainerStatusResponse:
        response = pb.GetTrainerStatusResponse(node=self.node_status())
        if (machine := self.machine()) is not None:
            response.training.CopyFrom(machine.snapshot())
        return response

    async def ListModelVariants(
        self, request: pb.ListModelVariantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelVariantsResponse:
        return pb.ListModelVariantsResponse(
            variants=[
                pb.ModelVariant(
                    name=v.name,
                    description=v.description,
                    category_types=list(v.category_types),
                    default_hyperparameters=to_struct(v.defaults),
                    base_models=list(v.base_models),
                    formats=list(v.formats),
                    hyperparameters=[spec.to_proto() for spec in v.hyperparameters],
                )
                for v in self.plugin.variants()
            ]
        )

    async def VerifyHyperparameters(
        self, request: pb.VerifyHyperparametersRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyHyperparametersResponse:
        verification = self.plugin.verify(request.model_variant, from_struct(request.hyperparameters))
        return pb.VerifyHyperparametersResponse(
            valid=verification.valid,
            errors=list(verification.errors),
            warnings=list(verification.warnings),
            corrected=to_struct(verification.corrected),
        )

    def _current(self, verb: str) -> TrainingMachine:
        machine = self.machine()
        if machine is None:
            raise FailedPrecondition(f"nothing to {verb}: this trainer is idle")
        return machine

    async def StopTraining(
        self, request: pb.StopTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.StopTrainingResponse:
        machine = self._current("stop")
        if machine.record.end == "abort":
            raise FailedPrecondition(f"training {machine.record.id} is being aborted; it cannot be stopped instead")
        machine.request("stop")
        return pb.StopTrainingResponse(training=machine.snapshot())

    async def AbortTraining(
        self, request: pb.AbortTrainingRequest, context: grpc.aio.ServicerContext
    ) -> pb.AbortTrainingResponse:
        machine = self._current("abort")
        machine.request("abort")
        return pb.AbortTrainingResponse(training=machine.snapshot())

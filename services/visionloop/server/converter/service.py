"""ConverterService: on-demand conversions and what this converter did recently."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import grpc

from visionloop.converter.v1 import converter_service_pb2 as pb
from visionloop.converter.v1 import converter_service_pb2_grpc
from visionloop.loop.v1 import model_service_pb2, project_service_pb2
from visionloop.runtime import access
from visionloop.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from visionloop.server.converter import pipeline
from visionloop.server.converter.worker import Converter

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_VERSION = re.compile(r"^[0-9]{1,9}\.[0-9]{1,9}$")
DEFAULT_LIMIT = 50


def _check(request: pb.ConvertRequest) -> None:
    if not _NAME.match(request.organization) or not _NAME.match(request.project):
        raise InvalidArgument("organization and project are required, e.g. acme / weeds")
    if not _VERSION.match(request.version):
        raise InvalidArgument(f"version {request.version!r} must be a model version such as 1.3")
    if request.target_format not in pipeline.TARGETS:
        raise InvalidArgument(
            f"target_format {request.target_format!r} is not one this converter produces: {', '.join(pipeline.TARGETS)}"
        )
    options = request.options
    if options.opset and not 7 <= options.opset <= 99:
        raise InvalidArgument(f"options.opset {options.opset} is not an ONNX opset (7 and up; 0: default)")
    if not 0 <= options.max_batch_size <= 1024:
        raise InvalidArgument("options.max_batch_size must be within 1..1024 (0: default)")
    if not 0 <= options.instance_count <= 64:
        raise InvalidArgument("options.instance_count must be within 1..64 (0: default)")
    if not 0 <= options.max_map_drop <= 1:
        raise InvalidArgument("options.max_map_drop must be within [0, 1] (0: default)")


def _options(base: pipeline.Options, request: pb.ConvertRequest) -> pipeline.Options:
    """The converter's defaults with what the request sets."""
    given = request.options
    entry = dataclasses.replace(
        base.entry,
        max_batch_size=given.max_batch_size or base.entry.max_batch_size,
        instances=given.instance_count or base.entry.instances,
        tensorrt=given.tensorrt or base.entry.tensorrt,
    )
    return dataclasses.replace(
        base,
        opset=given.opset or base.opset,
        fp16_max_map_drop=given.max_map_drop or base.fp16_max_map_drop,
        int8_max_map_drop=given.max_map_drop or base.int8_max_map_drop,
        skip_parity=given.skip_parity_check,
        entry=entry,
    )


class ConverterServicer(converter_service_pb2_grpc.ConverterServiceServicer):
    def __init__(self, converter: Converter | None = None) -> None:
        self.converter = converter

    def _running(self) -> Converter:
        if self.converter is None:
            raise Unavailable("the converter is starting; retry in a moment")
        return self.converter

    async def Convert(self, request: pb.ConvertRequest, context: grpc.aio.ServicerContext) -> pb.ConvertResponse:
        _check(request)
        converter = self._running()
        # The hub sees the converter's own token: a caller's token limited to a project is checked here.
        access.check_project(request.organization, request.project)
        ref = project_service_pb2.ProjectRef(organization=request.organization, project=request.project)
        key = model_service_pb2.ModelKey(ref=ref, version=request.version)
        target = request.target_format
        options = _options(converter.options, request)
        model = await converter.hub.model(key)
        if model is None:
            raise NotFound(
                f"model version {request.version} of {request.organization}/{request.project} does not exist"
            )
        if target in model.formats:
            return pb.ConvertResponse(conversion=self._done(request))
        if not any(f in model.formats for f in pipeline.SOURCES):
            raise FailedPrecondition(
                f"version {request.version} has no onnx or pytorch format to convert from; it has {list(model.formats)}"
            )
        deadline = asyncio.get_running_loop().time() + converter.settings.lease_seconds
        while True:
            async with converter.lock:
                claim = await converter.hub.claim([target], converter.lease, ref)
                if claim is not None:
                    mine = claim.key.version == request.version
                    # The hub hands out the project's oldest pending conversion first: run it and go on.
                    record = await converter.run(claim, options if mine else converter.options)
                    if mine:
                        if record.state == pb.CONVERSION_STATE_FAILED:
                            raise FailedPrecondition(f"conversion to {target} failed: {record.reason}")
                        return pb.ConvertResponse(conversion=record)
                    continue
            # Nothing to claim: another replica holds it, or the hub gave up on it.
            if (await converter.hub.model(key, target)) is not None:
                return pb.ConvertResponse(conversion=self._done(request))
            latest = self._latest(request)
            if latest is not None and latest.state == pb.CONVERSION_STATE_FAILED:
                raise FailedPrecondition(f"conversion to {target} failed: {latest.reason}")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise FailedPrecondition(
                    f"version {request.version} has no {target} and no converter could claim it within the lease: "
                    "it failed its attempts on the hub, or another converter is still at it"
                )
            await converter.changed(within=min(remaining, 5.0))

    def _latest(self, request: pb.ConvertRequest) -> pb.Conversion | None:
        """This converter's newest record of the requested conversion."""
        wanted = (request.organization, request.project, request.version, request.target_format)
        for record in self._running().recent:
            if (record.organization, record.project, record.version, record.target_format) == wanted:
                return record
        return None

    def _done(self, request: pb.ConvertRequest) -> pb.Conversion:
        """The conversion that made an existing format: this converter's record, else a summary."""
        record = self._latest(request)
        if record is not None and record.state == pb.CONVERSION_STATE_SUCCEEDED:
            return record
        return pb.Conversion(
            organization=request.organization,
            project=request.project,
            version=request.version,
            target_format=request.target_format,
            state=pb.CONVERSION_STATE_SUCCEEDED,
            reason="the version already has this format",
        )

    async def ListConversionPaths(
        self, request: pb.ListConversionPathsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConversionPathsResponse:
        paths = [pb.ConversionPath(source_format=s, target_format=t) for s, t in pipeline.paths()]
        return pb.ListConversionPathsResponse(paths=paths)

    async def ListConversions(
        self, request: pb.ListConversionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListConversionsResponse:
        if request.limit < 0:
            raise InvalidArgument("limit must not be negative (0: 50)")
        limit = request.limit or DEFAULT_LIMIT
        shown = [c for c in self._running().recent if access.may_use(c.organization, c.project)]
        return pb.ListConversionsResponse(conversions=shown[:limit])

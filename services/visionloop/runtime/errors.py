"""Domain errors that map to precise gRPC status codes.

Handlers raise these; the exception interceptor turns them into the status and keeps the
message, which must be something a person can act on. Anything else becomes INTERNAL with a
generic message and the stack trace in the log.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base of errors a client may see verbatim."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class DataLoss(ServiceError):
    code = grpc.StatusCode.DATA_LOSS


class OutOfRange(ServiceError):
    code = grpc.StatusCode.OUT_OF_RANGE

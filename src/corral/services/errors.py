"""Errors of the services, one class per gRPC status code (containerd's errdefs).

The storage libraries' error classes (corral.metadata.errors) carry the same `grpc_code`
attribute, so the gRPC adapters map both the same way."""

try:
    from corral.metadata.errors import (StorageError as ServiceError, NotFound, AlreadyExists,
                                        FailedPrecondition, InvalidArgument, Unavailable)
except ImportError:  # pragma: no cover - storage libraries not present
    class ServiceError(Exception):
        grpc_code = "UNKNOWN"

    class NotFound(ServiceError):
        grpc_code = "NOT_FOUND"

    class AlreadyExists(ServiceError):
        grpc_code = "ALREADY_EXISTS"

    class FailedPrecondition(ServiceError):
        grpc_code = "FAILED_PRECONDITION"

    class InvalidArgument(ServiceError):
        grpc_code = "INVALID_ARGUMENT"

    class Unavailable(ServiceError):
        grpc_code = "UNAVAILABLE"


class Unimplemented(ServiceError):
    grpc_code = "UNIMPLEMENTED"


class Internal(ServiceError):
    grpc_code = "INTERNAL"

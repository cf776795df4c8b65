"""Errors of the services, one class per gRPC status code (containerd's errdefs): the storage
libraries' classes (corral.metadata.errors, each with a `grpc_code`), re-exported, plus the
codes only services use. The gRPC adapters map any of them by `grpc_code`."""

from corral.metadata.errors import (AlreadyExists, FailedPrecondition, InvalidArgument,  # noqa: F401
                                    NotFound, StorageError as ServiceError, Unavailable)


class Unimplemented(ServiceError):
    grpc_code = "UNIMPLEMENTED"


class Internal(ServiceError):
    grpc_code = "INTERNAL"

"""Error classes shared by the storage libraries (content, metadata, snapshots, GC).

Each class corresponds to one gRPC status code, so the daemon can map them one to one
(containerd's errdefs). Messages are one line: what failed, on what, what to do.
"""


class StorageError(Exception):
    """Base of every storage error."""

    grpc_code = "UNKNOWN"


class NotFound(StorageError):
    grpc_code = "NOT_FOUND"


class AlreadyExists(StorageError):
    grpc_code = "ALREADY_EXISTS"


class FailedPrecondition(StorageError):
    grpc_code = "FAILED_PRECONDITION"


class InvalidArgument(StorageError):
    grpc_code = "INVALID_ARGUMENT"


class Unavailable(StorageError):
    grpc_code = "UNAVAILABLE"

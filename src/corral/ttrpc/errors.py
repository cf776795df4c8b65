"""ttrpc errors: the gRPC status codes, carried on the wire as google.rpc.Status."""

OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
DATA_LOSS = 15
UNAUTHENTICATED = 16

CODE_NAMES = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, int)}


class TtrpcError(Exception):
    """An RPC failed with a status code (see the constants above) and a message."""

    def __init__(self, code, message, details=()):
        super().__init__(f"{CODE_NAMES.get(code, code)}: {message}")
        self.code = code
        self.message = message
        self.details = list(details)

    def to_status(self):
        from corral.api.google.rpc.status_pb2 import Status

        return Status(code=self.code, message=self.message, details=self.details)

    @classmethod
    def from_status(cls, status):
        return cls(status.code, status.message, status.details)


class ConnectionClosed(TtrpcError):
    def __init__(self, message="ttrpc: connection closed"):
        super().__init__(UNAVAILABLE, message)

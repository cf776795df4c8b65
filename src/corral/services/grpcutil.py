"""Helpers the gRPC adapters share: namespace and lease from the request metadata, error
mapping to status codes, timestamps."""

import functools
import inspect
import logging
import re

import grpc
from google.protobuf import timestamp_pb2

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"

log = logging.getLogger("corrald")

# containerd's identifier rule for namespaces (and most other names)
_IDENT = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")


class Abort(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _header(context, key):
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v
    return None


def validate_name(kind, name):
    if not name:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{kind} name must not be empty")
    if len(name) > 76 or not _IDENT.match(name):
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                    f"{kind} name {name!r} is invalid: use letters, digits and single . _ - separators, at most 76 characters")
    return name


def namespace(context):
    ns = _header(context, NAMESPACE_HEADER)
    if not ns:
        raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                    "namespace is required: set the containerd-namespace header (ctr -n NAME)")
    return validate_name("namespace", ns)


def lease(context):
    return _header(context, LEASE_HEADER) or None


def _status_of(exc):
    if isinstance(exc, Abort):
        return exc.code, str(exc)
    code = getattr(exc, "grpc_code", None)
    if code:
        return getattr(grpc.StatusCode, code, grpc.StatusCode.UNKNOWN), str(exc)
    return None


def _fail(context, exc, method):
    status = _status_of(exc)
    if status is None:
        log.exception("%s: unexpected error", method)
        status = (grpc.StatusCode.INTERNAL, f"{method}: internal error: {exc}")
    context.abort(*status)


def rpc(fn):
    """Wrap a servicer method: known errors become their status codes; generators too."""
    name = fn.__qualname__
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(self, request, context):
            try:
                yield from fn(self, request, context)
            except grpc.RpcError:
                raise
            except Exception as e:
                _fail(context, e, name)
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(self, request, context):
        try:
            return fn(self, request, context)
        except grpc.RpcError:
            raise
        except Exception as e:
            _fail(context, e, name)
    return wrapper


def long_lived(fn):
    """Mark a servicer method whose calls last as long as the client wants (Wait, Subscribe):
    the daemon runs them on a thread pool of their own, so however many there are, they
    cannot take every worker from the short calls."""
    fn.corral_long_lived = True
    return fn


def ts(value):
    """A Timestamp from a float of epoch seconds, a datetime or None."""
    t = timestamp_pb2.Timestamp()
    if value is None:
        return t
    if hasattr(value, "timestamp"):
        value = value.timestamp()
    ns = int(round(float(value) * 1e9))
    t.seconds, t.nanos = divmod(ns, 1_000_000_000)
    return t


def from_ts(t):
    if t is None or (t.seconds == 0 and t.nanos == 0):
        return None
    return t.seconds + t.nanos / 1e9

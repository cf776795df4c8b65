"""corral's asyncio ttrpc (corral.ttrpc) used from the daemon's gRPC threads: one event loop
in a background thread runs the shim clients and the events endpoint shims publish to."""

import asyncio
import logging
import os
import threading

from corral.services import errors

log = logging.getLogger("corrald")

NAMESPACE_KEY = "containerd-namespace-ttrpc"

_BY_CODE = {3: errors.InvalidArgument, 5: errors.NotFound, 6: errors.AlreadyExists,
            9: errors.FailedPrecondition, 12: errors.Unimplemented, 14: errors.Unavailable}


class ShimCallError(errors.ServiceError):
    """A shim answered with an error status that has no closer class."""


class ShimGone(errors.Unavailable):
    """The connection to the shim closed: the shim process is gone."""


def _map_error(e, what):
    from corral.ttrpc.errors import CODE_NAMES
    cls = _BY_CODE.get(e.code)
    msg = f"{what}: {getattr(e, 'message', e)}"
    if cls is None:
        err = ShimCallError(msg)
        err.grpc_code = CODE_NAMES.get(e.code, "UNKNOWN")
        return err
    return cls(msg)


class _Raw:
    def __init__(self, data):
        self.data = data

    def SerializeToString(self):
        return self.data


class _RawResponse:
    @staticmethod
    def FromString(data):
        return data


class Loop:
    """An asyncio loop on its own thread; run(coro) from any other thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ttrpc-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout=None):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class SyncClient:
    """A blocking façade over corral.ttrpc.client.Client for one shim address."""

    def __init__(self, loop, address, namespace, timeout=10):
        from corral.ttrpc.client import Client
        from corral.ttrpc.errors import ConnectionClosed, TtrpcError
        self._loop = loop
        self._error = TtrpcError
        self._closed_error = ConnectionClosed
        self.metadata = {NAMESPACE_KEY: namespace}
        self.on_lost = None  # called (in a thread of its own) when the shim drops the connection
        self._expect_close = False
        try:
            self._client = loop.run(Client.connect(address, timeout), timeout + 1)
        except (OSError, asyncio.TimeoutError, TimeoutError) as e:
            err = errors.Unavailable(f"cannot connect to shim at {address}: {e or type(e).__name__}")
            # nothing listens there (refused, or no socket): the shim process is gone; a
            # timeout instead says a shim may be there but does not accept (stopped, busy)
            err.refused = isinstance(e, (ConnectionRefusedError, FileNotFoundError))
            raise err from None
        # the client's reader task ends when the connection does: that is how a shim's death shows
        reader = getattr(self._client, "_reader_task", None)
        if reader is not None:
            loop.loop.call_soon_threadsafe(reader.add_done_callback, self._reader_done)

    def _reader_done(self, _task):
        if not self._expect_close and self.on_lost is not None:
            threading.Thread(target=self.on_lost, name="shim-lost", daemon=True).start()

    def expect_close(self):
        """The shim is being shut down on purpose: its connection closing is no news."""
        self._expect_close = True

    def start(self, service, method, data, timeout):
        """Send a call without waiting; finish() collects its answer."""
        coro = self._client.call(service, method, _Raw(data), _RawResponse, timeout=timeout, metadata=self.metadata)
        return asyncio.run_coroutine_threadsafe(coro, self._loop.loop), method, timeout

    def finish(self, pending, alive=None, cancel_with=None):
        """The call's answer. A call without timeout is given up (cancelled) when the caller
        goes away: cancel_with(callback) registers a callback for that (a gRPC context's
        add_callback, which returns False when the RPC has already ended; no polling), or
        else alive() is checked twice a second."""
        fut, method, timeout = pending
        if cancel_with is not None and timeout is None:
            import concurrent.futures
            if not cancel_with(fut.cancel):
                fut.cancel()
            try:
                return fut.result()
            except concurrent.futures.CancelledError:
                raise errors.Unavailable(f"shim {method}: the caller went away") from None
            except self._closed_error as e:
                raise ShimGone(f"shim {method}: {e}") from None
            except self._error as e:
                raise _map_error(e, f"shim {method}") from None
        if alive is not None and timeout is None:
            import concurrent.futures
            while not fut.done():
                if not alive():
                    fut.cancel()
                    raise errors.Unavailable(f"shim {method}: the caller went away")
                concurrent.futures.wait([fut], timeout=0.5)
        try:
            return fut.result(None if timeout is None else timeout + 2)
        except self._closed_error as e:
            raise ShimGone(f"shim {method}: {e}") from None
        except self._error as e:
            raise _map_error(e, f"shim {method}") from None
        except TimeoutError:
            fut.cancel()
            raise errors.Unavailable(f"shim {method}: no answer in {timeout}s") from None

    def call(self, service, method, data, timeout):
        return self.finish(self.start(service, method, data, timeout))

    def call_many(self, others, service, method, datas, timeout):
        """The same call to this client and `others` (clients on the same loop), concurrently,
        with one hand-off to the loop thread rather than one per client (a `tasks ls` over 100
        shims paid that hand-off 100 times): a list of answers (bytes) or errors, in order."""
        clients = [self] + list(others)

        async def all_calls():
            return await asyncio.gather(*(c._client.call(service, method, _Raw(d), _RawResponse, timeout=timeout,
                                                         metadata=c.metadata)
                                          for c, d in zip(clients, datas)), return_exceptions=True)
        try:
            results = self._loop.run(all_calls(), timeout + 2)
        except TimeoutError:
            return [errors.Unavailable(f"shim {method}: no answer in {timeout}s")] * len(clients)
        out = []
        for r in results:
            if isinstance(r, self._closed_error):
                r = ShimGone(f"shim {method}: {r}")
            elif isinstance(r, self._error):
                r = _map_error(r, f"shim {method}")
            elif isinstance(r, (asyncio.TimeoutError, TimeoutError)):
                r = errors.Unavailable(f"shim {method}: no answer in {timeout}s")
            out.append(r)
        return out

    def close(self):
        self._expect_close = True
        try:
            self._loop.run(self._client.close(), 5)
        except Exception:
            pass


def serve_events(loop, address, exchange):
    """The ttrpc endpoint (containerd.services.events.ttrpc.v1.Events/Forward) where shims
    send their task events; they go to the exchange like any published event."""
    from google.protobuf import empty_pb2
    from corral.api.containerd.services.events.ttrpc.v1 import events_pb2 as ttrpc_events
    from corral.api.containerd.services.events.v1 import events_pb2
    from corral.ttrpc.errors import INVALID_ARGUMENT, TtrpcError
    from corral.ttrpc.server import Server

    async def forward(ctx, req):
        env = events_pb2.Envelope.FromString(req.envelope.SerializeToString())
        try:
            exchange.forward(env)
        except errors.ServiceError as e:
            raise TtrpcError(INVALID_ARGUMENT, str(e)) from None
        return empty_pb2.Empty()

    server = Server()
    server.register("containerd.services.events.ttrpc.v1.Events", {"Forward": (ttrpc_events.ForwardRequest, forward)})
    os.makedirs(os.path.dirname(address) or ".", mode=0o711, exist_ok=True)
    if os.path.exists(address):
        os.unlink(address)  # the gRPC socket check already proved no other daemon runs
    loop.run(server.serve(address), 10)
    return server

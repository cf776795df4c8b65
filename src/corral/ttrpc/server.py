"""A ttrpc server on asyncio: unary methods registered per service, each request handled
in its own task, deadlines from the request's timeout_nano, errors as google.rpc.Status."""

import asyncio
import os
import socket
import sys
import time

_TRACE = bool(os.environ.get('CORRAL_TTRPC_TRACE'))

from corral.api.ttrpc.ttrpc_pb2 import Request, Response
from corral.ttrpc import codec
from corral.ttrpc.errors import (DEADLINE_EXCEEDED, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNIMPLEMENTED,
                                 UNKNOWN, TtrpcError)


class CallContext:
    """What a handler learns about its call: metadata (key -> list of values) and the deadline
    (loop time, or None)."""

    def __init__(self, metadata, deadline):
        self.metadata = metadata
        self.deadline = deadline

    def get(self, key, default=None):
        values = self.metadata.get(key)
        return values[0] if values else default


class Server:
    def __init__(self):
        self.methods = {}  # (service, method) -> (request class, async handler(ctx, request))
        self._servers = []
        self._conns = set()

    def register(self, service, methods):
        """methods: {name: (request_class, async handler(ctx, request) -> response message)}"""
        for name, entry in methods.items():
            self.methods[(service, name)] = entry

    async def serve(self, path=None, sock=None):
        """Listen on a unix socket path (created mode 0600) or an already bound socket."""
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            old = os.umask(0o177)
            try:
                sock.bind(path)
            finally:
                os.umask(old)
            sock.listen(128)
        server = await asyncio.start_unix_server(self._connection, sock=sock)
        self._servers.append(server)
        return server

    async def close(self):
        for server in self._servers:
            server.close()
        for writer in list(self._conns):
            writer.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    async def _connection(self, reader, writer):
        self._conns.add(writer)
        tasks = set()
        try:
            while True:
                try:
                    stream_id, mtype, flags, payload = await codec.read_frame(reader)
                except codec.OversizedFrame as e:
                    if e.mtype == codec.TYPE_REQUEST:
                        self._send_error(writer, e.stream_id, TtrpcError(RESOURCE_EXHAUSTED, str(e)))
                    continue
                if mtype != codec.TYPE_REQUEST:
                    continue  # data frames for streams no unary method opened
                task = asyncio.create_task(self._handle(writer, stream_id, payload))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(writer)
            for task in tasks:
                task.cancel()
            writer.close()

    async def _handle(self, writer, stream_id, payload):
        loop = asyncio.get_running_loop()
        try:
            req = Request.FromString(payload)
        except Exception:
            self._send_error(writer, stream_id, TtrpcError(INVALID_ARGUMENT, "ttrpc: cannot decode request"))
            return
        entry = self.methods.get((req.service, req.method))
        if entry is None:
            known = any(s == req.service for s, _ in self.methods)
            what = f"method {req.method}" if known else f"service {req.service}"
            self._send_error(writer, stream_id, TtrpcError(UNIMPLEMENTED, what))
            return
        request_cls, handler = entry
        if _TRACE:
            print(f"{time.time():.3f} ttrpc {req.method} start", file=sys.stderr, flush=True)
        metadata = {}
        for kv in req.metadata:
            metadata.setdefault(kv.key, []).append(kv.value)
        timeout = req.timeout_nano / 1e9 if req.timeout_nano > 0 else None
        ctx = CallContext(metadata, loop.time() + timeout if timeout else None)
        try:
            message = request_cls.FromString(req.payload)
            if timeout:
                result = await asyncio.wait_for(handler(ctx, message), timeout)
            else:
                result = await handler(ctx, message)
            out = Response(payload=result.SerializeToString())
        except TtrpcError as e:
            out = Response(status=e.to_status())
        except asyncio.TimeoutError:
            out = Response(status=TtrpcError(DEADLINE_EXCEEDED, "context deadline exceeded").to_status())
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a handler bug becomes an error reply, not a dead connection
            out = Response(status=TtrpcError(UNKNOWN, f"{type(e).__name__}: {e}").to_status())
        data = out.SerializeToString()
        if _TRACE:
            print(f"{time.time():.3f} ttrpc {req.method} end", file=sys.stderr, flush=True)
        if len(data) > codec.MESSAGE_LENGTH_MAX:
            self._send_error(writer, stream_id, TtrpcError(
                RESOURCE_EXHAUSTED, f"response length {len(data)} exceeds maximum message size"))
            return
        self._send(writer, stream_id, data)

    def _send_error(self, writer, stream_id, err):
        self._send(writer, stream_id, Response(status=err.to_status()).SerializeToString())

    @staticmethod
    def _send(writer, stream_id, data):
        if not writer.is_closing():
            writer.write(codec.encode(stream_id, codec.TYPE_RESPONSE, data))

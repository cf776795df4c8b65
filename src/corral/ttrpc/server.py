"""A ttrpc server on asyncio (any loop with add_reader/add_writer: see sockio): methods
registered per service, each request handled in its own task, deadlines from the request's
timeout_nano, errors as google.rpc.Status.

Unary methods are (request class, async handler(ctx, request) -> response). Streaming methods
are StreamMethod(request class, async handler(ctx, stream), client_streaming, server_streaming):
the handler reads the client's messages with `await stream.recv()` (None once the client has
closed its side) or `async for`, sends its own with `await stream.send(message)`, and returns
the final message (or None). How the stream ends on the wire follows ttrpc: a server-streaming
method ends with a data frame flagged remote-closed (plus no-data when it returned None); a
method that only streams from the client ends with a response frame; errors always end with a
response frame carrying the status."""

import asyncio
import os
import socket
import sys
import time

_TRACE = bool(os.environ.get('CORRAL_TTRPC_TRACE'))

from corral.api.ttrpc.ttrpc_pb2 import Request, Response
from corral.ttrpc import codec, sockio
from corral.ttrpc.sockets import listen_private
from corral.ttrpc.errors import (DEADLINE_EXCEEDED, FAILED_PRECONDITION, INTERNAL, INVALID_ARGUMENT,
                                 RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNKNOWN, ConnectionClosed, TtrpcError)


class CallContext:
    """What a handler learns about its call: metadata (key -> list of values) and the deadline
    (loop time, or None)."""

    def __init__(self, metadata, deadline):
        self.metadata = metadata
        self.deadline = deadline

    def get(self, key, default=None):
        values = self.metadata.get(key)
        return values[0] if values else default


class StreamMethod:
    """A streaming method for Server.register: which sides stream, and its handler."""

    def __init__(self, request_cls, handler, client_streaming=False, server_streaming=False):
        self.request_cls = request_cls
        self.handler = handler
        self.client_streaming = client_streaming
        self.server_streaming = server_streaming


_END = object()


class ServerStream:
    """The server's end of one stream: recv() the client's messages, send() its own."""

    def __init__(self, writer, stream_id, method):
        self._writer = writer
        self.stream_id = stream_id
        self._method = method
        self._inbox = asyncio.Queue()
        self.remote_closed = False  # the client sent its last message
        self.local_closed = False  # we sent our last frame

    # called by the connection's read loop
    def _deliver(self, payload):
        self._inbox.put_nowait(payload)

    def _close_remote(self):
        if not self.remote_closed:
            self.remote_closed = True
            self._inbox.put_nowait(_END)

    async def recv(self):
        """The client's next message, or None once it has closed its side."""
        item = await self._inbox.get()
        if item is _END:
            self._inbox.put_nowait(_END)  # later calls see the end too
            return None
        try:
            return self._method.request_cls.FromString(item)
        except Exception as e:
            raise TtrpcError(INTERNAL, f"ttrpc: cannot decode stream message: {e}") from None

    def __aiter__(self):
        return self

    async def __anext__(self):
        msg = await self.recv()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def send(self, message):
        """One message to the client as a data frame (server-streaming methods only)."""
        if not self._method.server_streaming:
            raise TtrpcError(FAILED_PRECONDITION, "ttrpc: this method does not stream to the client")
        if self.local_closed:
            raise TtrpcError(FAILED_PRECONDITION, "ttrpc: stream already closed")
        if self._writer.is_closing():
            raise ConnectionClosed()
        self._writer.write(codec.encode(self.stream_id, codec.TYPE_DATA, message.SerializeToString()))
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise ConnectionClosed(f"ttrpc: stream {self.stream_id}: {e}") from None


class Server:
    def __init__(self):
        self.methods = {}  # (service, method) -> (request class, async handler(ctx, request))
        self._listeners = []
        self._conns = set()

    def register(self, service, methods):
        """methods: {name: (request_class, async handler(ctx, request) -> response message)
        or a StreamMethod}"""
        for name, entry in methods.items():
            self.methods[(service, name)] = entry

    async def serve(self, path=None, sock=None):
        """Listen on a unix socket path (created mode 0600) or an already bound socket."""
        if sock is None:
            sock = listen_private(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, 128)
        listener = sockio.Listener(sock, lambda conn: self._connection(conn, conn))
        self._listeners.append(listener)
        return listener

    async def close(self):
        for listener in self._listeners:
            listener.close()
        for writer in list(self._conns):
            writer.close()
        self._listeners = []

    async def _connection(self, reader, writer):
        self._conns.add(writer)
        tasks = set()
        streams = {}  # stream id -> ServerStream, while the stream is open
        last_id = 0
        try:
            while True:
                try:
                    stream_id, mtype, flags, payload = await codec.read_frame(reader)
                except codec.OversizedFrame as e:
                    if e.mtype == codec.TYPE_REQUEST:
                        self._send_error(writer, e.stream_id, TtrpcError(RESOURCE_EXHAUSTED, str(e)))
                    continue
                if mtype == codec.TYPE_REQUEST:
                    if not stream_id & 1:
                        self._send_error(writer, stream_id, TtrpcError(
                            INVALID_ARGUMENT, "ttrpc: stream id must be odd for client-initiated streams"))
                        continue
                    if stream_id <= last_id:
                        self._send_error(writer, stream_id, TtrpcError(
                            INVALID_ARGUMENT, "ttrpc: stream id cannot be re-used and must increase"))
                        continue
                    last_id = stream_id
                    if flags:  # a stream: opened here, before data frames that may follow at once
                        task = self._open_stream(writer, stream_id, payload, flags, streams)
                        if task is None:
                            continue
                    else:
                        task = asyncio.create_task(self._handle(writer, stream_id, payload, streams))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif mtype == codec.TYPE_DATA:
                    self._data(writer, stream_id, flags, payload, streams)
                # other types: ignored, for later versions of the protocol
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._conns.discard(writer)
            for task in tasks:
                task.cancel()
            writer.close()

    def _data(self, writer, stream_id, flags, payload, streams):
        stream = streams.get(stream_id)
        if stream is None:
            self._send_error(writer, stream_id, TtrpcError(INVALID_ARGUMENT, "ttrpc: stream id is not active"))
            return
        if stream.remote_closed:
            self._send_error(writer, stream_id, TtrpcError(
                INVALID_ARGUMENT, "ttrpc: data after the client closed its side of the stream"))
            return
        if not flags & codec.FLAG_NO_DATA:
            if not stream._method.client_streaming:
                self._send_error(writer, stream_id, TtrpcError(
                    INVALID_ARGUMENT, "ttrpc: data from a client that does not stream"))
                return
            stream._deliver(payload)
        if flags & codec.FLAG_REMOTE_CLOSED:
            stream._close_remote()

    def _lookup(self, writer, stream_id, payload):
        """(request, method entry), or None after sending the error."""
        try:
            req = Request.FromString(payload)
        except Exception:
            self._send_error(writer, stream_id, TtrpcError(INVALID_ARGUMENT, "ttrpc: cannot decode request"))
            return None
        entry = self.methods.get((req.service, req.method))
        if entry is None:
            known = any(s == req.service for s, _ in self.methods)
            what = f"method {req.method}" if known else f"service {req.service}"
            self._send_error(writer, stream_id, TtrpcError(UNIMPLEMENTED, what))
            return None
        return req, entry

    def _open_stream(self, writer, stream_id, payload, flags, streams):
        """A request with stream flags: its task, or None after an error reply."""
        found = self._lookup(writer, stream_id, payload)
        if found is None:
            return None
        req, entry = found
        if not isinstance(entry, StreamMethod):  # a unary method asked for as a stream
            return asyncio.create_task(self._handle(writer, stream_id, payload, streams))
        return asyncio.create_task(self._handle_stream(writer, stream_id, req, flags, entry, streams))

    async def _handle(self, writer, stream_id, payload, streams):
        loop = asyncio.get_running_loop()
        found = self._lookup(writer, stream_id, payload)
        if found is None:
            return
        req, entry = found
        if isinstance(entry, StreamMethod):  # called the unary way: the request is its only message
            await self._handle_stream(writer, stream_id, req, 0, entry, streams)
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
                # in this task (wait_for would run the handler in a task of its own): the reply
                # goes out in the same step the handler returns, before the work it scheduled
                async with asyncio.timeout(timeout):
                    result = await handler(ctx, message)
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

    def _handle_stream(self, writer, stream_id, req, flags, method, streams):
        """Register the stream now (data frames may follow the request at once) and return
        the coroutine that runs its handler."""
        loop = asyncio.get_running_loop()
        metadata = {}
        for kv in req.metadata:
            metadata.setdefault(kv.key, []).append(kv.value)
        timeout = req.timeout_nano / 1e9 if req.timeout_nano > 0 else None
        ctx = CallContext(metadata, loop.time() + timeout if timeout else None)
        stream = ServerStream(writer, stream_id, method)
        # the request's payload is the first message, unless a streaming client sent none
        if req.payload or not method.client_streaming:
            stream._deliver(req.payload)
        if not method.client_streaming or flags & codec.FLAG_REMOTE_CLOSED:
            stream._close_remote()
        streams[stream_id] = stream
        return self._run_stream(writer, ctx, stream, timeout, streams)

    async def _run_stream(self, writer, ctx, stream, timeout, streams):
        method, stream_id = stream._method, stream.stream_id
        try:
            if timeout:
                result = await asyncio.wait_for(method.handler(ctx, stream), timeout)
            else:
                result = await method.handler(ctx, stream)
            data = b"" if result is None else result.SerializeToString()
            if len(data) > codec.MESSAGE_LENGTH_MAX:
                raise TtrpcError(RESOURCE_EXHAUSTED, f"response length {len(data)} exceeds maximum message size")
            if method.server_streaming:
                flags = codec.FLAG_REMOTE_CLOSED | (codec.FLAG_NO_DATA if result is None else 0)
                frame = codec.encode(stream_id, codec.TYPE_DATA, data, flags)
            else:
                frame = codec.encode(stream_id, codec.TYPE_RESPONSE, Response(payload=data).SerializeToString())
        except TtrpcError as e:
            frame = codec.encode(stream_id, codec.TYPE_RESPONSE, Response(status=e.to_status()).SerializeToString())
        except asyncio.TimeoutError:
            frame = codec.encode(stream_id, codec.TYPE_RESPONSE, Response(
                status=TtrpcError(DEADLINE_EXCEEDED, "context deadline exceeded").to_status()).SerializeToString())
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a handler bug ends the stream with an error, not the connection
            frame = codec.encode(stream_id, codec.TYPE_RESPONSE, Response(
                status=TtrpcError(UNKNOWN, f"{type(e).__name__}: {e}").to_status()).SerializeToString())
        finally:
            stream.local_closed = True
            streams.pop(stream_id, None)
        if not writer.is_closing():
            writer.write(frame)

    def _send_error(self, writer, stream_id, err):
        self._send(writer, stream_id, Response(status=err.to_status()).SerializeToString())

    @staticmethod
    def _send(writer, stream_id, data):
        if not writer.is_closing():
            writer.write(codec.encode(stream_id, codec.TYPE_RESPONSE, data))

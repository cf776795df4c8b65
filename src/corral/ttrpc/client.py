"""A ttrpc client on asyncio: unary calls and streams multiplexed on one connection (odd,
increasing stream ids), with metadata and deadlines; error statuses are raised as TtrpcError.

    resp = await client.call(service, method, request, ResponseClass)
    stream = await client.stream(service, method, ResponseClass, request=None,
                                 client_streaming=True, server_streaming=True)
    await stream.send(msg); await stream.close_send()
    async for msg in stream: ...          # or: msg = await stream.recv()  (None at the end)
"""

import asyncio

from corral.api.ttrpc.ttrpc_pb2 import KeyValue, Request, Response
from corral.ttrpc import codec, sockio
from corral.ttrpc.errors import (DEADLINE_EXCEEDED, FAILED_PRECONDITION, INTERNAL, ConnectionClosed,
                                 TtrpcError)

_END = object()


class ClientStream:
    """The client's end of one stream (see Client.stream)."""

    def __init__(self, client, stream_id, service, method, response_cls, client_streaming, server_streaming,
                 deadline):
        self._client = client
        self.stream_id = stream_id
        self._what = f"{service}/{method}"
        self._response_cls = response_cls
        self.client_streaming = client_streaming
        self.server_streaming = server_streaming
        self._deadline = deadline  # loop time, or None
        self._inbox = asyncio.Queue()
        self.local_closed = not client_streaming  # a request without RO is our last word
        self.remote_closed = False  # set when recv() has seen the server's last frame
        self._done = False  # the read loop saw the server's last frame

    # called by the client's read loop; the inbox holds ("msg", payload), ("resp", Response),
    # ("err", exception) or _END. Returns True on the stream's last frame.
    def _frame(self, mtype, flags, payload):
        if mtype == codec.TYPE_RESPONSE:
            self._done = True
            try:
                self._inbox.put_nowait(("resp", Response.FromString(payload)))
            except Exception as e:
                self._inbox.put_nowait(("err", TtrpcError(INTERNAL, f"ttrpc: bad response: {e}")))
            return True
        if not self.server_streaming:
            self._done = True
            self._inbox.put_nowait(("err", TtrpcError(
                INTERNAL, f"ttrpc: {self._what}: data frame from a server that does not stream")))
            return True
        if not flags & codec.FLAG_NO_DATA:
            self._inbox.put_nowait(("msg", payload))
        if flags & codec.FLAG_REMOTE_CLOSED:
            self._done = True
            self._inbox.put_nowait(_END)
            return True
        return False

    def _fail(self, err):
        if not self._done:
            self._done = True
            self._inbox.put_nowait(("err", err))

    async def send(self, message):
        """One message to the server as a data frame."""
        if not self.client_streaming:
            raise TtrpcError(FAILED_PRECONDITION, f"ttrpc: {self._what} does not stream from the client")
        if self.local_closed:
            raise TtrpcError(FAILED_PRECONDITION, f"ttrpc: {self._what}: send after close_send")
        await self._client._send_frame(self.stream_id, codec.TYPE_DATA, 0, message.SerializeToString(), self._what)

    async def close_send(self):
        """Tell the server we have sent our last message (a remote-closed, no-data frame)."""
        if not self.client_streaming:
            raise TtrpcError(FAILED_PRECONDITION, f"ttrpc: {self._what} does not stream from the client")
        if self.local_closed:
            return
        self.local_closed = True
        await self._client._send_frame(self.stream_id, codec.TYPE_DATA,
                                       codec.FLAG_REMOTE_CLOSED | codec.FLAG_NO_DATA, b"", self._what)

    async def recv(self):
        """The server's next message, or None once the stream has ended. An error status ends
        the stream and is raised as TtrpcError."""
        if self.remote_closed:
            return None
        try:
            if self._deadline is None:
                item = await self._inbox.get()
            else:
                left = self._deadline - asyncio.get_running_loop().time()
                item = await asyncio.wait_for(self._inbox.get(), max(left, 0))
        except asyncio.TimeoutError:
            self._finish()
            raise TtrpcError(DEADLINE_EXCEEDED, f"{self._what}: deadline exceeded") from None
        if item is _END:
            self._finish()
            return None
        kind, value = item
        if kind == "msg":
            return self._decode(value)
        self._finish()
        if kind == "err":
            raise value
        if value.HasField("status") and value.status.code != 0:
            raise TtrpcError.from_status(value.status)
        return self._decode(value.payload)

    def _decode(self, payload):
        try:
            return self._response_cls.FromString(payload)
        except Exception as e:
            raise TtrpcError(INTERNAL, f"ttrpc: {self._what}: bad message: {e}") from None

    def _finish(self):
        self.remote_closed = True
        self._done = True
        if self._client._streams.get(self.stream_id) is self:
            del self._client._streams[self.stream_id]

    def close(self):
        """Stop listening to this stream (ttrpc has no cancel frame; late frames are dropped)."""
        self._finish()

    def __aiter__(self):
        return self

    async def __anext__(self):
        msg = await self.recv()
        if msg is None:
            raise StopAsyncIteration
        return msg


def _request(service, method, message, timeout, metadata):
    """The request frame's message: the first (or only) message, deadline and metadata."""
    req = Request(service=service, method=method)
    if message is not None:
        req.payload = message.SerializeToString()
    if timeout:
        req.timeout_nano = int(timeout * 1e9)
    for key, values in (metadata or {}).items():
        for value in [values] if isinstance(values, str) else values:
            req.metadata.append(KeyValue(key=key, value=value))
    return req


class Client:
    def __init__(self, reader, writer):
        self._reader = reader
        self._writer = writer
        self._next_id = 1
        self._pending = {}  # stream id -> future of Response (unary calls)
        self._streams = {}  # stream id -> ClientStream
        self._closed = None
        self._reader_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, path, timeout=10):
        if path.startswith("unix://"):
            path = path[len("unix://"):]
        if path.startswith("@"):
            path = "\0" + path[1:]
        conn = await asyncio.wait_for(sockio.connect_unix(path, timeout), timeout)
        return cls(conn, conn)

    async def call(self, service, method, request, response_cls, timeout=None, metadata=None):
        """One unary call; returns a response_cls message or raises TtrpcError."""
        if self._closed:
            raise self._closed
        req = _request(service, method, request, timeout, metadata)
        stream_id = self._next_id
        self._next_id += 2
        frame = codec.encode(stream_id, codec.TYPE_REQUEST, req.SerializeToString())
        fut = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = fut
        try:
            self._writer.write(frame)
            await self._writer.drain()
            if timeout:
                async with asyncio.timeout(timeout):  # wait_for: one more loop step per answer
                    resp = await fut
            else:
                resp = await fut
        except asyncio.TimeoutError:
            raise TtrpcError(DEADLINE_EXCEEDED, f"{service}/{method}: deadline exceeded") from None
        except (ConnectionError, OSError) as e:
            raise ConnectionClosed(f"ttrpc: {service}/{method}: {e}") from None
        finally:
            self._pending.pop(stream_id, None)
        if resp.HasField("status") and resp.status.code != 0:
            raise TtrpcError.from_status(resp.status)
        return response_cls.FromString(resp.payload)

    async def stream(self, service, method, response_cls, request=None, *, client_streaming=False,
                     server_streaming=False, timeout=None, metadata=None):
        """Open a stream. request, if given, travels in the request frame as the first message
        (the only one when not client_streaming). Returns a ClientStream."""
        if self._closed:
            raise self._closed
        req = _request(service, method, request, timeout, metadata)
        stream_id = self._next_id
        self._next_id += 2
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        stream = ClientStream(self, stream_id, service, method, response_cls, client_streaming, server_streaming,
                              deadline)
        self._streams[stream_id] = stream
        flags = codec.FLAG_REMOTE_OPEN if client_streaming else codec.FLAG_REMOTE_CLOSED
        try:
            await self._send_frame(stream_id, codec.TYPE_REQUEST, flags, req.SerializeToString(),
                                   f"{service}/{method}")
        except BaseException:
            self._streams.pop(stream_id, None)
            raise
        return stream

    async def _send_frame(self, stream_id, mtype, flags, data, what):
        if self._closed:
            raise self._closed
        frame = codec.encode(stream_id, mtype, data, flags)
        try:
            self._writer.write(frame)
            await self._writer.drain()
        except (ConnectionError, OSError) as e:
            raise ConnectionClosed(f"ttrpc: {what}: {e}") from None

    async def _read_loop(self):
        err = ConnectionClosed()
        try:
            while True:
                try:
                    stream_id, mtype, flags, payload = await codec.read_frame(self._reader)
                except codec.OversizedFrame as e:
                    fut = self._pending.get(e.stream_id)
                    if fut and not fut.done():
                        fut.set_exception(TtrpcError(codec.RESOURCE_EXHAUSTED, str(e)))
                    stream = self._streams.get(e.stream_id)
                    if stream is not None:
                        stream._fail(TtrpcError(codec.RESOURCE_EXHAUSTED, str(e)))
                        del self._streams[e.stream_id]
                    continue
                fut = self._pending.get(stream_id)
                if fut is None:
                    stream = self._streams.get(stream_id)
                    if stream is not None and mtype in (codec.TYPE_RESPONSE, codec.TYPE_DATA):
                        if stream._frame(mtype, flags, payload):
                            del self._streams[stream_id]  # its last frame: later ones are dropped
                    continue
                if mtype != codec.TYPE_RESPONSE:
                    continue
                if not fut.done():
                    try:
                        fut.set_result(Response.FromString(payload))
                    except Exception as e:
                        fut.set_exception(TtrpcError(INTERNAL, f"ttrpc: bad response: {e}"))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._closed = err
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            for stream in self._streams.values():
                stream._fail(err)

    async def close(self):
        self._writer.close()
        self._reader_task.cancel()
        try:
            await self._reader_task
        except asyncio.CancelledError:
            pass
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

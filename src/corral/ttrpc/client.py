"""A ttrpc client on asyncio: unary calls multiplexed on one connection (odd stream ids),
with metadata and deadlines; error statuses are raised as TtrpcError."""

import asyncio

from corral.api.ttrpc.ttrpc_pb2 import KeyValue, Request, Response
from corral.ttrpc import codec
from corral.ttrpc.errors import DEADLINE_EXCEEDED, INTERNAL, ConnectionClosed, TtrpcError


class Client:
    def __init__(self, reader, writer):
        self._reader = reader
        self._writer = writer
        self._next_id = 1
        self._pending = {}  # stream id -> future of Response
        self._closed = None
        self._reader_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, path, timeout=10):
        if path.startswith("unix://"):
            path = path[len("unix://"):]
        if path.startswith("@"):
            path = "\0" + path[1:]
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), timeout)
        return cls(reader, writer)

    async def call(self, service, method, request, response_cls, timeout=None, metadata=None):
        """One unary call; returns a response_cls message or raises TtrpcError."""
        if self._closed:
            raise self._closed
        req = Request(service=service, method=method, payload=request.SerializeToString())
        if timeout:
            req.timeout_nano = int(timeout * 1e9)
        for key, values in (metadata or {}).items():
            for value in [values] if isinstance(values, str) else values:
                req.metadata.append(KeyValue(key=key, value=value))
        stream_id = self._next_id
        self._next_id += 2
        frame = codec.encode(stream_id, codec.TYPE_REQUEST, req.SerializeToString())
        fut = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = fut
        try:
            self._writer.write(frame)
            await self._writer.drain()
            resp = await asyncio.wait_for(fut, timeout) if timeout else await fut
        except asyncio.TimeoutError:
            raise TtrpcError(DEADLINE_EXCEEDED, f"{service}/{method}: deadline exceeded") from None
        except (ConnectionError, OSError) as e:
            raise ConnectionClosed(f"ttrpc: {service}/{method}: {e}") from None
        finally:
            self._pending.pop(stream_id, None)
        if resp.HasField("status") and resp.status.code != 0:
            raise TtrpcError.from_status(resp.status)
        return response_cls.FromString(resp.payload)

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
                    continue
                if mtype != codec.TYPE_RESPONSE:
                    continue
                fut = self._pending.get(stream_id)
                if fut and not fut.done():
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

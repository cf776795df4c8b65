"""ttrpc: the frame codec, and our client against our server on a real unix socket."""

import asyncio
import os
import shutil
import socket
import struct
import tempfile

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from corral.ttrpc import codec
from corral.ttrpc.client import Client
from corral.ttrpc.errors import (DEADLINE_EXCEEDED, NOT_FOUND, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNKNOWN,
                                 ConnectionClosed, TtrpcError)
from corral.ttrpc.server import Server
from corral.api.ttrpc.ttrpc_pb2 import Request, Response


def test_header_layout():
    frame = codec.encode(3, codec.TYPE_REQUEST, b"abc", flags=codec.FLAG_REMOTE_CLOSED)
    assert frame == struct.pack(">IIBB", 3, 3, 1, 1) + b"abc"
    assert codec.HEADER_SIZE == 10
    assert codec.decode_header(frame) == (3, 3, 1, 1)


def test_encode_refuses_oversized():
    codec.encode(1, codec.TYPE_REQUEST, b"x" * codec.MESSAGE_LENGTH_MAX)
    with pytest.raises(TtrpcError) as e:
        codec.encode(1, codec.TYPE_REQUEST, b"x" * (codec.MESSAGE_LENGTH_MAX + 1))
    assert e.value.code == RESOURCE_EXHAUSTED


def test_read_frame_and_oversized_skip():
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(struct.pack(">IIBB", codec.MESSAGE_LENGTH_MAX + 1, 5, 1, 0))
        reader.feed_data(b"y" * (codec.MESSAGE_LENGTH_MAX + 1))
        reader.feed_data(codec.encode(7, codec.TYPE_DATA, b"", flags=codec.FLAG_NO_DATA))
        reader.feed_eof()
        with pytest.raises(codec.OversizedFrame) as e:
            await codec.read_frame(reader)
        assert e.value.stream_id == 5
        assert await codec.read_frame(reader) == (7, codec.TYPE_DATA, codec.FLAG_NO_DATA, b"")
        with pytest.raises(asyncio.IncompleteReadError):
            await codec.read_frame(reader)
    asyncio.run(main())


SERVICE = "corral.test.Echo"


def make_server():
    server = Server()

    async def echo(ctx, req):
        return StringValue(value=req.value + "|" + ",".join(ctx.metadata.get("k", [])))

    async def slow(ctx, req):
        await asyncio.sleep(float(req.value))
        return StringValue(value="late")

    async def fail(ctx, req):
        raise TtrpcError(NOT_FOUND, f"{req.value}: not found")

    async def crash(ctx, req):
        raise ValueError("boom")

    async def big(ctx, req):
        return StringValue(value="z" * (codec.MESSAGE_LENGTH_MAX + 10))

    server.register(SERVICE, {"Echo": (StringValue, echo), "Slow": (StringValue, slow),
                              "Fail": (StringValue, fail), "Crash": (StringValue, crash),
                              "Big": (StringValue, big)})
    return server


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="corral-ttrpc-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_with_server(sockdir, body):
    async def main():
        server = make_server()
        path = os.path.join(sockdir, "s.sock")
        await server.serve(path)
        client = await Client.connect("unix://" + path)
        try:
            return await asyncio.wait_for(body(client, path), 30)
        finally:
            await client.close()
            await server.close()
    return asyncio.run(main())


def test_unary_call_with_metadata(sockdir):
    async def body(client, path):
        assert os.stat(path).st_mode & 0o777 == 0o600
        resp = await client.call(SERVICE, "Echo", StringValue(value="hi"), StringValue,
                                 metadata={"k": ["a", "b"]})
        assert resp.value == "hi|a,b"
    run_with_server(sockdir, body)


def test_concurrent_calls_are_multiplexed(sockdir):
    async def body(client, path):
        slow = asyncio.create_task(client.call(SERVICE, "Slow", StringValue(value="0.3"), StringValue))
        fast = [client.call(SERVICE, "Echo", StringValue(value=str(i)), StringValue) for i in range(20)]
        got = await asyncio.gather(*fast)
        assert [g.value for g in got] == [f"{i}|" for i in range(20)]
        assert not slow.done()
        assert (await slow).value == "late"
    run_with_server(sockdir, body)


def test_errors_carry_status(sockdir):
    async def body(client, path):
        with pytest.raises(TtrpcError) as e:
            await client.call(SERVICE, "Fail", StringValue(value="c1"), StringValue)
        assert e.value.code == NOT_FOUND and e.value.message == "c1: not found"
        with pytest.raises(TtrpcError) as e:
            await client.call(SERVICE, "Crash", StringValue(), StringValue)
        assert e.value.code == UNKNOWN and "boom" in e.value.message
        with pytest.raises(TtrpcError) as e:
            await client.call(SERVICE, "Nope", StringValue(), StringValue)
        assert e.value.code == UNIMPLEMENTED
        with pytest.raises(TtrpcError) as e:
            await client.call("no.Such", "Echo", StringValue(), StringValue)
        assert e.value.code == UNIMPLEMENTED
        # the connection still works after errors
        assert (await client.call(SERVICE, "Echo", StringValue(value="ok"), StringValue)).value == "ok|"
    run_with_server(sockdir, body)


def test_deadline_is_sent_and_enforced(sockdir):
    async def body(client, path):
        # the server enforces the request's timeout_nano even if the client waits longer
        reader, writer = await asyncio.open_unix_connection(path)
        req = Request(service=SERVICE, method="Slow", payload=StringValue(value="5").SerializeToString(),
                      timeout_nano=100_000_000)
        writer.write(codec.encode(1, codec.TYPE_REQUEST, req.SerializeToString()))
        stream_id, mtype, _, payload = await asyncio.wait_for(codec.read_frame(reader), 5)
        assert (stream_id, mtype) == (1, codec.TYPE_RESPONSE)
        assert Response.FromString(payload).status.code == DEADLINE_EXCEEDED
        writer.close()
        with pytest.raises(TtrpcError) as e:
            await client.call(SERVICE, "Slow", StringValue(value="5"), StringValue, timeout=0.1)
        assert e.value.code == DEADLINE_EXCEEDED
    run_with_server(sockdir, body)


def test_message_size_limit(sockdir):
    async def body(client, path):
        with pytest.raises(TtrpcError) as e:
            await client.call(SERVICE, "Big", StringValue(), StringValue)
        assert e.value.code == RESOURCE_EXHAUSTED
        with pytest.raises(TtrpcError) as e:
            await client.call(SERVICE, "Echo", StringValue(value="x" * (codec.MESSAGE_LENGTH_MAX + 1)), StringValue)
        assert e.value.code == RESOURCE_EXHAUSTED
        # an oversized frame from a peer is answered with an error and skipped
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(struct.pack(">IIBB", codec.MESSAGE_LENGTH_MAX + 1, 9, 1, 0) + b"q" * (codec.MESSAGE_LENGTH_MAX + 1))
        req = Request(service=SERVICE, method="Echo", payload=StringValue(value="after").SerializeToString())
        writer.write(codec.encode(11, codec.TYPE_REQUEST, req.SerializeToString()))
        got = {}
        for _ in range(2):
            sid, _, _, payload = await asyncio.wait_for(codec.read_frame(reader), 10)
            got[sid] = Response.FromString(payload)
        assert got[9].status.code == RESOURCE_EXHAUSTED
        assert StringValue.FromString(got[11].payload).value == "after|"
        writer.close()
        assert (await client.call(SERVICE, "Echo", StringValue(value="ok"), StringValue)).value == "ok|"
    run_with_server(sockdir, body)


def test_pending_calls_fail_when_server_goes_away(sockdir):
    async def main():
        server = make_server()
        path = os.path.join(sockdir, "s.sock")
        await server.serve(path)
        client = await Client.connect(path)
        call = asyncio.create_task(client.call(SERVICE, "Slow", StringValue(value="10"), StringValue))
        await asyncio.sleep(0.2)
        await server.close()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(call, 5)
        await client.close()
    asyncio.run(main())


def test_serve_on_a_bound_socket(sockdir):
    async def main():
        path = os.path.join(sockdir, "b.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(8)
        server = make_server()
        await server.serve(sock=sock)
        client = await Client.connect(path)
        assert (await client.call(SERVICE, "Echo", StringValue(value="b"), StringValue)).value == "b|"
        await client.close()
        await server.close()
    asyncio.run(main())

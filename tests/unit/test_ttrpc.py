"""ttrpc: the frame codec, and our client against our server on a real unix socket, on asyncio's
loop (as in corrald) and on the shim's own loop (corral.shim.loop)."""

import asyncio
import os
import shutil
import socket
import struct
import tempfile

import pytest
from google.protobuf.wrappers_pb2 import StringValue

from corral.shim.loop import ShimLoop
from corral.ttrpc import codec, sockio
from corral.ttrpc.sockets import listen_private
from corral.ttrpc.client import Client
from corral.ttrpc.errors import (DEADLINE_EXCEEDED, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNKNOWN,
                                 ConnectionClosed, TtrpcError)
from corral.ttrpc.server import Server, StreamMethod
from corral.api.ttrpc.ttrpc_pb2 import Request, Response


RUN = [asyncio.run]  # how a test runs its coroutine: set per test by the loop fixture


@pytest.fixture(autouse=True, params=["asyncio", "shimloop"])
def loop_kind(request):
    RUN[0] = asyncio.run if request.param == "asyncio" else (lambda coro: ShimLoop().run(coro))
    yield request.param
    RUN[0] = asyncio.run


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
    RUN[0](main())


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
    return RUN[0](main())


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
        reader = writer = await sockio.connect_unix(path, 5)
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
        reader = writer = await sockio.connect_unix(path, 5)
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
    RUN[0](main())


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
    RUN[0](main())


# --- streams -------------------------------------------------------------------------

STREAMS = "corral.test.Streams"


def make_stream_server():
    server = make_server()

    async def count(ctx, stream):  # server-streaming: value "n[,final]" -> n messages
        req = await stream.recv()
        n, _, final = req.value.partition(",")
        assert await stream.recv() is None  # a client that does not stream sent only its request
        for i in range(int(n)):
            await stream.send(StringValue(value=f"c{i}"))
        return StringValue(value=final) if final else None

    async def join(ctx, stream):  # client-streaming: the messages joined, as one response
        return StringValue(value="+".join([m.value async for m in stream]))

    async def echo(ctx, stream):  # bidirectional: each message back, upper-cased
        async for m in stream:
            await stream.send(StringValue(value=m.value.upper()))
        return None

    async def fail_after(ctx, stream):  # sends one message, then fails
        await stream.recv()
        await stream.send(StringValue(value="first"))
        raise TtrpcError(NOT_FOUND, "gone midway")

    async def slow(ctx, stream):
        await asyncio.sleep(5)

    server.register(STREAMS, {
        "Count": StreamMethod(StringValue, count, server_streaming=True),
        "Join": StreamMethod(StringValue, join, client_streaming=True),
        "Echo": StreamMethod(StringValue, echo, client_streaming=True, server_streaming=True),
        "FailAfter": StreamMethod(StringValue, fail_after, server_streaming=True),
        "Slow": StreamMethod(StringValue, slow, client_streaming=True, server_streaming=True),
    })
    return server


def run_with_stream_server(sockdir, body):
    async def main():
        server = make_stream_server()
        path = os.path.join(sockdir, "st.sock")
        await server.serve(path)
        client = await Client.connect(path)
        try:
            return await asyncio.wait_for(body(client, path), 30)
        finally:
            await client.close()
            await server.close()
    return RUN[0](main())


async def collect(stream):
    return [m.value async for m in stream]


def test_server_streaming(sockdir):
    async def body(client, path):
        s = await client.stream(STREAMS, "Count", StringValue, StringValue(value="3"), server_streaming=True)
        assert await collect(s) == ["c0", "c1", "c2"]
        assert await s.recv() is None  # the end stays the end
        s = await client.stream(STREAMS, "Count", StringValue, StringValue(value="2,last"), server_streaming=True)
        assert await collect(s) == ["c0", "c1", "last"]
        s = await client.stream(STREAMS, "Count", StringValue, StringValue(value="0"), server_streaming=True)
        assert await collect(s) == []
        assert client._streams == {}
    run_with_stream_server(sockdir, body)


def test_client_streaming(sockdir):
    async def body(client, path):
        s = await client.stream(STREAMS, "Join", StringValue, client_streaming=True)
        for word in ("a", "b", "c"):
            await s.send(StringValue(value=word))
        await s.close_send()
        assert await s.recv() == StringValue(value="a+b+c")
        assert await s.recv() is None
        with pytest.raises(TtrpcError):
            await s.send(StringValue(value="late"))
        # a first message in the request frame counts as the first message
        s = await client.stream(STREAMS, "Join", StringValue, StringValue(value="x"), client_streaming=True)
        await s.send(StringValue(value="y"))
        await s.close_send()
        assert await collect(s) == ["x+y"]
        # no message at all
        s = await client.stream(STREAMS, "Join", StringValue, client_streaming=True)
        await s.close_send()
        assert await collect(s) == [""]
    run_with_stream_server(sockdir, body)


def test_bidirectional_streams_interleave_with_unary_calls(sockdir):
    async def body(client, path):
        a = await client.stream(STREAMS, "Echo", StringValue, client_streaming=True, server_streaming=True)
        b = await client.stream(STREAMS, "Echo", StringValue, client_streaming=True, server_streaming=True)
        for i in range(5):
            await a.send(StringValue(value=f"a{i}"))
            await b.send(StringValue(value=f"b{i}"))
            assert (await a.recv()).value == f"A{i}"
            assert (await client.call(SERVICE, "Echo", StringValue(value=str(i)), StringValue)).value == f"{i}|"
            assert (await b.recv()).value == f"B{i}"
        await a.close_send()
        assert await a.recv() is None
        await b.send(StringValue(value="more"))
        await b.close_send()
        assert await collect(b) == ["MORE"]
        assert (a.stream_id, b.stream_id) == (1, 3) and client._next_id > 13
    run_with_stream_server(sockdir, body)


def test_stream_errors(sockdir):
    async def body(client, path):
        s = await client.stream(STREAMS, "FailAfter", StringValue, StringValue(), server_streaming=True)
        assert (await s.recv()).value == "first"
        with pytest.raises(TtrpcError) as e:
            await s.recv()
        assert e.value.code == NOT_FOUND and e.value.message == "gone midway"
        assert await s.recv() is None
        s = await client.stream(STREAMS, "Nope", StringValue, StringValue(), server_streaming=True)
        with pytest.raises(TtrpcError) as e:
            await s.recv()
        assert e.value.code == UNIMPLEMENTED
        # the server enforces the deadline; the client gives up at the same time
        s = await client.stream(STREAMS, "Slow", StringValue, client_streaming=True, server_streaming=True,
                                timeout=0.2)
        with pytest.raises(TtrpcError) as e:
            await s.recv()
        assert e.value.code == DEADLINE_EXCEEDED
        # a unary method asked for as a stream answers with its response
        s = await client.stream(SERVICE, "Echo", StringValue, StringValue(value="u"))
        assert await collect(s) == ["u|"]
        # sending on a stream that does not stream from the client is refused locally
        s = await client.stream(STREAMS, "Count", StringValue, StringValue(value="1"), server_streaming=True)
        with pytest.raises(TtrpcError):
            await s.send(StringValue())
        assert await collect(s) == ["c0"]
    run_with_stream_server(sockdir, body)


def test_open_streams_fail_when_the_server_goes_away(sockdir):
    async def main():
        server = make_stream_server()
        path = os.path.join(sockdir, "g.sock")
        await server.serve(path)
        client = await Client.connect(path)
        s = await client.stream(STREAMS, "Echo", StringValue, client_streaming=True, server_streaming=True)
        await s.send(StringValue(value="x"))
        assert (await s.recv()).value == "X"
        await server.close()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(s.recv(), 5)
        with pytest.raises(ConnectionClosed):
            await client.stream(STREAMS, "Echo", StringValue, client_streaming=True)
        await client.close()
    RUN[0](main())


# --- streams on the wire: what our client sends, what our server sends -----------------

async def read_frames(reader, n):
    return [await asyncio.wait_for(codec.read_frame(reader), 5) for _ in range(n)]


def test_wire_frames_sent_by_the_client(sockdir):
    async def main():
        frames = []
        got = asyncio.Event()

        async def peer(reader, writer):
            try:
                while True:
                    frames.append(await codec.read_frame(reader))
                    got.set()
            except asyncio.IncompleteReadError:
                writer.close()
        path = os.path.join(sockdir, "w.sock")
        server = sockio.Listener(listen_private(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, 8),
                                 lambda conn: peer(conn, conn))
        client = await Client.connect(path)
        try:
            bidi = await client.stream(STREAMS, "Echo", StringValue, client_streaming=True, server_streaming=True,
                                       metadata={"k": "v"})
            await bidi.send(StringValue(value="d1"))
            await bidi.send(StringValue())
            await bidi.close_send()
            await client.stream(STREAMS, "Count", StringValue, StringValue(value="2"), server_streaming=True)
            while len(frames) < 5:
                got.clear()
                await asyncio.wait_for(got.wait(), 5)
        finally:
            await client.close()
            server.close()
        (s1, t1, f1, p1), (s2, t2, f2, p2), (s3, t3, f3, p3), (s4, t4, f4, p4), (s5, t5, f5, p5) = frames
        req = Request.FromString(p1)
        assert (s1, t1, f1) == (1, codec.TYPE_REQUEST, codec.FLAG_REMOTE_OPEN)
        assert (req.service, req.method, req.payload) == (STREAMS, "Echo", b"")
        assert [(kv.key, kv.value) for kv in req.metadata] == [("k", "v")]
        assert (s2, t2, f2, StringValue.FromString(p2).value) == (1, codec.TYPE_DATA, 0, "d1")
        assert (s3, t3, f3, p3) == (1, codec.TYPE_DATA, 0, b"")  # an empty message is still data
        assert (s4, t4, f4, p4) == (1, codec.TYPE_DATA, codec.FLAG_REMOTE_CLOSED | codec.FLAG_NO_DATA, b"")
        req = Request.FromString(p5)
        assert (s5, t5, f5) == (3, codec.TYPE_REQUEST, codec.FLAG_REMOTE_CLOSED)
        assert StringValue.FromString(req.payload).value == "2"
    RUN[0](main())


def test_wire_frames_sent_by_the_server(sockdir):
    async def main():
        server = make_stream_server()
        path = os.path.join(sockdir, "ws.sock")
        await server.serve(path)
        reader = writer = await sockio.connect_unix(path, 5)

        def request(sid, method, payload=None, flags=0):
            req = Request(service=STREAMS, method=method)
            if payload is not None:
                req.payload = payload.SerializeToString()
            writer.write(codec.encode(sid, codec.TYPE_REQUEST, req.SerializeToString(), flags))

        try:
            # server-streaming: data frames without flags, then remote-closed + no-data, empty
            request(1, "Count", StringValue(value="2"), codec.FLAG_REMOTE_CLOSED)
            frames = await read_frames(reader, 3)
            assert [(s, t, f) for s, t, f, _ in frames] == [
                (1, codec.TYPE_DATA, 0), (1, codec.TYPE_DATA, 0),
                (1, codec.TYPE_DATA, codec.FLAG_REMOTE_CLOSED | codec.FLAG_NO_DATA)]
            assert [p for *_, p in frames] == [StringValue(value="c0").SerializeToString(),
                                                StringValue(value="c1").SerializeToString(), b""]
            # a final message travels in the remote-closed data frame
            request(3, "Count", StringValue(value="0,end"), codec.FLAG_REMOTE_CLOSED)
            [(s, t, f, p)] = await read_frames(reader, 1)
            assert (s, t, f, StringValue.FromString(p).value) == (3, codec.TYPE_DATA, codec.FLAG_REMOTE_CLOSED, "end")
            # client-streaming: data frames in, one response frame out; data frames may
            # follow the request at once, and the last may carry data with remote-closed
            request(5, "Join", flags=codec.FLAG_REMOTE_OPEN)
            writer.write(codec.encode(5, codec.TYPE_DATA, StringValue(value="p").SerializeToString()))
            writer.write(codec.encode(5, codec.TYPE_DATA, StringValue(value="q").SerializeToString(),
                                      codec.FLAG_REMOTE_CLOSED))
            [(s, t, f, p)] = await read_frames(reader, 1)
            resp = Response.FromString(p)
            assert (s, t, f, resp.status.code) == (5, codec.TYPE_RESPONSE, 0, 0)
            assert StringValue.FromString(resp.payload).value == "p+q"
            # an error ends a server stream with a response frame carrying the status
            request(7, "FailAfter", StringValue(), codec.FLAG_REMOTE_CLOSED)
            (s1, t1, _, _), (s2, t2, f2, p2) = await read_frames(reader, 2)
            assert (s1, t1, s2, t2, f2) == (7, codec.TYPE_DATA, 7, codec.TYPE_RESPONSE, 0)
            assert Response.FromString(p2).status.code == NOT_FOUND
            # protocol errors: data for no open stream, an even id, a re-used id
            writer.write(codec.encode(99, codec.TYPE_DATA, b"", codec.FLAG_REMOTE_CLOSED | codec.FLAG_NO_DATA))
            request(10, "Count", StringValue(value="1"), codec.FLAG_REMOTE_CLOSED)
            request(3, "Count", StringValue(value="1"), codec.FLAG_REMOTE_CLOSED)
            frames = await read_frames(reader, 3)
            assert [(s, t) for s, t, _, _ in frames] == [(99, codec.TYPE_RESPONSE), (10, codec.TYPE_RESPONSE),
                                                         (3, codec.TYPE_RESPONSE)]
            assert all(Response.FromString(p).status.code == INVALID_ARGUMENT for *_, p in frames)
            # data after the client closed its side is refused; the stream itself goes on
            request(11, "Slow", flags=codec.FLAG_REMOTE_CLOSED)
            writer.write(codec.encode(11, codec.TYPE_DATA, StringValue(value="late").SerializeToString()))
            [(s, t, _, p)] = await read_frames(reader, 1)
            assert (s, t, Response.FromString(p).status.code) == (11, codec.TYPE_RESPONSE, INVALID_ARGUMENT)
            # the connection still serves unary calls
            req = Request(service=SERVICE, method="Echo", payload=StringValue(value="ok").SerializeToString())
            writer.write(codec.encode(13, codec.TYPE_REQUEST, req.SerializeToString()))
            [(s, t, f, p)] = await read_frames(reader, 1)
            assert (s, t, f) == (13, codec.TYPE_RESPONSE, 0)
            assert StringValue.FromString(Response.FromString(p).payload).value == "ok|"
        finally:
            writer.close()
            await server.close()
    RUN[0](main())

"""corral.client_wire, the client's own gRPC-over-HTTP/2 transport: HPACK decoding against
RFC 7541's examples, and whole calls against both servers it must speak to, corrald
(grpcio's server) and the real containerd (Go's): unary calls, server streams, a client
stream, error statuses, deadlines, cancellation, big messages both ways (flow control and
frame splitting), calls from many threads on one connection, and a reconnect."""

import json
import os
import threading
import time
import uuid

import pytest

from corral.client import Client, ClientError
from corral.client_wire import HpackDecoder, _hint, _literal, huffman_decode, _HUFFMAN_LENGTHS
from tests.helpers.containerd import Containerd
from tests.helpers.corrald import Corrald


# -- HPACK (no server)

def test_hpack_rfc7541_requests_with_huffman_and_dynamic_table():
    d = HpackDecoder()
    # C.4.1 - C.4.3: three requests on one connection, Huffman strings, entries indexed
    first = bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")
    assert d.decode(first) == [(":method", "GET"), (":scheme", "http"), (":path", "/"),
                               (":authority", "www.example.com")]
    second = bytes.fromhex("828684be5886a8eb10649cbf")
    assert d.decode(second) == [(":method", "GET"), (":scheme", "http"), (":path", "/"),
                                (":authority", "www.example.com"), ("cache-control", "no-cache")]
    third = bytes.fromhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")
    assert d.decode(third) == [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"),
                               (":authority", "www.example.com"), ("custom-key", "custom-value")]
    assert d.table == [("custom-key", "custom-value"), ("cache-control", "no-cache"),
                       (":authority", "www.example.com")]
    assert d.size == 164


def test_hpack_eviction_and_size_update():
    d = HpackDecoder()
    d.decode(b"\x3f\xc1\x1f")  # size update to 4064 (5-bit prefix integer 31 + 4033)
    assert d.max_size == 4064
    d.decode(b"\x20")  # size 0 empties the table
    d.decode(b"\x3f\x51")  # back to 31 + 81 = 112 bytes
    big = "v" * 40
    d.decode(b"\x40" + _hint(1, 7) + b"a" + _hint(len(big), 7) + big.encode())   # 73 bytes
    d.decode(b"\x40" + _hint(1, 7) + b"b" + _hint(len(big), 7) + big.encode())   # evicts a
    assert [n for n, _ in d.table] == ["b"] and d.size == 73
    with pytest.raises(ValueError):
        d.decode(b"\x3f\xe1\x3f")  # beyond our SETTINGS_HEADER_TABLE_SIZE (4096)


def _huffman_encode(data):
    lengths = [ord(c) - 48 for c in _HUFFMAN_LENGTHS]
    codes, code, prev = {}, 0, 0
    for s in sorted(range(257), key=lambda s: (lengths[s], s)):
        code <<= lengths[s] - prev
        prev = lengths[s]
        codes[s] = code
        code += 1
    bits = nbits = 0
    for b in data:
        bits = (bits << lengths[b]) | codes[b]
        nbits += lengths[b]
    pad = -nbits % 8
    bits = (bits << pad) | ((1 << pad) - 1)
    return bits.to_bytes((nbits + pad) // 8, "big")


def test_huffman_every_byte_round_trips():
    assert _huffman_encode(b"www.example.com") == bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff")  # RFC 7541 C.4.1
    data = bytes(range(256)) * 2
    assert huffman_decode(_huffman_encode(data)) == data
    with pytest.raises(ValueError):
        huffman_decode(b"\x00")  # '0' then 3 zero bits of padding


def test_our_literals_decode():
    block = _literal(":path", "/a.B/C", 4) + _literal("containerd-namespace", "x" * 300)
    assert HpackDecoder().decode(block) == [(":path", "/a.B/C"), ("containerd-namespace", "x" * 300)]


# -- against the servers

@pytest.fixture(scope="module", params=["corrald", "containerd"])
def server(request):
    d = Corrald() if request.param == "corrald" else Containerd()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def test_unary_and_streams(server):
    with Client(server.sock, namespace=f"wire-{uuid.uuid4().hex[:6]}") as c:
        assert c.version()["version"]
        ns = c.namespace
        c.create_namespace(ns, labels={"k": "v"})
        try:
            assert ns in [n.name for n in c.namespaces()]
            assert c.content() == []                    # a server stream with nothing in it
            assert c.snapshots("overlayfs") == []
            with pytest.raises(ClientError) as e:
                c.container("missing")
            assert e.value.code == "NOT_FOUND" and "missing" in e.value.message
            with pytest.raises(ClientError) as e:
                c.read_content("sha256:" + "0" * 64)    # an error ending a server stream
            assert e.value.code == "NOT_FOUND"
            with pytest.raises(ClientError) as e:
                c.create_namespace(ns)
            assert e.value.code == "ALREADY_EXISTS"
            with pytest.raises(ClientError) as e:  # a trailers-only answer
                c._channel.unary("/corral.test.v1.Nothing/Here", b"", timeout=10)
            assert e.value.code == "UNIMPLEMENTED"
        finally:
            c.delete_namespace(ns)


def test_big_messages_both_ways(server):
    """A 6 MB request and answer: more than the 64 KiB windows and 16 KiB frames HTTP/2 starts
    with, and more than one stream window of ours (4 MiB) in one message."""
    with Client(server.sock, namespace="wire-big") as c:
        blob = os.urandom(3 << 20).hex()
        spec = {"ociVersion": "1.0.2", "process": {"args": ["true"]}, "annotations": {"blob": blob}}
        c.create_container("big", spec, labels={"n": "1"})
        try:
            got = c.container("big")
            assert json.loads(got.spec.value)["annotations"]["blob"] == blob
            assert [x.id for x in c.list_containers()] == ["big"]
        finally:
            c.delete_container("big")
            c.delete_namespace("wire-big")


def test_deadline_and_cancel(server):
    with Client(server.sock) as c:
        sub = c._channel.stream(*_subscribe(c), timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(ClientError) as e:
            next(sub)
        # ours, or the server's own when its timer (from grpc-timeout) ran out first: containerd
        # answers "context deadline exceeded" as UNKNOWN
        assert e.value.code == "DEADLINE_EXCEEDED" or "deadline" in e.value.message, e.value
        assert time.monotonic() - t0 < 5
        # cancel from another thread ends an iteration that waits
        sub = c.subscribe()
        got = []

        def reader():
            try:
                for ev in sub:
                    got.append(ev)
            except ClientError as err:
                got.append(err)
        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        sub.cancel()
        t.join(5)
        assert not t.is_alive() and time.monotonic() - t0 < 2
        assert isinstance(got[-1], ClientError) and got[-1].code == "CANCELLED"
        assert c.version()["version"]  # the connection goes on


def _subscribe(c):
    from corral.api.containerd.services.events.v1 import events_pb2
    path, decode = c._method("events", "Subscribe")
    return path, events_pb2.SubscribeRequest().SerializeToString(), c._metadata(False), decode


def test_threads_share_one_connection(server):
    """Calls from 8 threads at once while another thread follows the event stream: each gets
    its own answer, and the events of the namespaces they make reach the follower."""
    with Client(server.sock) as c:
        sub = c.subscribe('topic=="/namespaces/create"')
        seen = []
        follower = threading.Thread(target=lambda: [seen.append(ev.namespace or ev.topic) for ev in _until(sub)])
        follower.start()
        time.sleep(0.3)
        errors = []
        names = [f"wire-t{i}-{uuid.uuid4().hex[:6]}" for i in range(8)]

        def work(name):
            try:
                for _ in range(20):
                    assert c.version()["version"]
                c.create_namespace(name)
                assert name in [n.name for n in c.namespaces()]
                c.delete_namespace(name)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        deadline = time.monotonic() + 10
        while len(seen) < len(names) and time.monotonic() < deadline:
            time.sleep(0.05)
        sub.cancel()
        follower.join(5)
        assert len(seen) >= len(names)


def _until(sub):
    try:
        yield from sub
    except ClientError:
        return


def test_client_stream_and_reconnect():
    """Transfer.Import (a client stream of 1 MiB chunks) against corrald, then a daemon restart:
    the next call makes a new connection."""
    from corral.busybox import make_oci_archive
    d = Corrald()
    try:
        d.start()
        archive = os.path.join(d.dir, "bb.tar")
        make_oci_archive(archive, "docker.io/library/busybox:latest")
        with Client(d.sock) as c:
            loaded = c.load(archive)
            assert [n for n, _ in loaded] == ["docker.io/library/busybox:latest"]
            assert c.version()["version"]
            d.stop()
            with pytest.raises(ClientError) as e:
                c.version()
            assert e.value.code == "UNAVAILABLE"
            d.start()
            assert [i.name for i in c.list_images()] == ["docker.io/library/busybox:latest"]
    finally:
        d.cleanup()


def test_no_server():
    with Client("/nonexistent/corral.sock") as c:
        with pytest.raises(ClientError) as e:
            c.version()
        assert e.value.code == "UNAVAILABLE" and "No such file or directory" in e.value.message


def test_close_ends_a_waiting_stream(server):
    """close() from another thread ends an iteration blocked on the socket with a ClientError."""
    c = Client(server.sock)
    sub = c.subscribe()
    got = []

    def reader():
        try:
            for _ in sub:
                pass
        except ClientError as e:
            got.append(e)
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.3)
    c.close()
    t.join(5)
    assert not t.is_alive() and got and got[0].code in ("CANCELLED", "UNAVAILABLE")

"""corrald under hostile and concurrent clients: garbage bytes, wrong message types, huge
messages, a hundred concurrent clients listing and creating. The daemon must answer errors
and stay up, never deadlock."""

import concurrent.futures
import os
import socket
import time

import grpc
import pytest
from google.protobuf import any_pb2

from corral.api.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from corral.api.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from tests.helpers.corrald import Corrald

NS = [("containerd-namespace", "stress")]


@pytest.fixture(scope="module")
def daemon():
    d = Corrald()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def alive(d):
    assert d.proc.poll() is None, d.log_text()
    assert d.ctr("version").returncode == 0


def channel(d):
    return grpc.insecure_channel("unix:" + d.sock)


def spec_any():
    return any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}")


def test_garbage_on_the_socket(daemon):
    for payload in (b"\x00" * 64, os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(1000)):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(5)
        s.connect(daemon.sock)
        try:
            s.sendall(payload)
            try:
                s.recv(1024)
            except (socket.timeout, ConnectionError):
                pass
        finally:
            s.close()
    alive(daemon)


def test_wrong_message_types_and_bad_fields(daemon):
    with channel(daemon) as ch:
        # a request body that is not a valid message of the method's type
        raw = ch.unary_unary("/containerd.services.containers.v1.Containers/Get",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            raw(b"\xff\xff\xff\xff\x0f", metadata=NS, timeout=10)
        assert e.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.UNKNOWN)
        unknown = ch.unary_unary("/containerd.services.nothing.v1.Nope/Do",
                                 request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as e:
            unknown(b"", timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stub = containers_pb2_grpc.ContainersStub(ch)
        for bad in (containers_pb2.Container(id="", runtime={"name": "x"}, spec=spec_any()),
                    containers_pb2.Container(id="a/b", runtime={"name": "x"}, spec=spec_any()),
                    containers_pb2.Container(id="ok", spec=spec_any()),
                    containers_pb2.Container(id="ok", runtime={"name": "x"})):
            with pytest.raises(grpc.RpcError) as e:
                stub.Create(containers_pb2.CreateContainerRequest(container=bad), metadata=NS, timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.List(containers_pb2.ListContainersRequest(filters=["id=="]), metadata=NS, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as e:
            stub.List(containers_pb2.ListContainersRequest(), metadata=[("containerd-namespace", "../etc")], timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    alive(daemon)


def test_huge_message_refused(daemon):
    with channel(daemon) as ch:
        stub = namespace_pb2_grpc.NamespacesStub(ch)
        big = namespace_pb2.Namespace(name="huge", labels={"k": "v" * (20 << 20)})
        with pytest.raises(grpc.RpcError) as e:
            stub.Create(namespace_pb2.CreateNamespaceRequest(namespace=big), timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # a big label within the message limit is refused by the label rule, not by a crash
        big = namespace_pb2.Namespace(name="biglabel", labels={"k": "v" * 10000})
        with pytest.raises(grpc.RpcError) as e:
            stub.Create(namespace_pb2.CreateNamespaceRequest(namespace=big), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    alive(daemon)


def test_hundred_concurrent_clients(daemon):
    n = int(os.environ.get("CORRAL_STRESS_CLIENTS", "100"))

    def client(i):
        with channel(daemon) as ch:
            stub = containers_pb2_grpc.ContainersStub(ch)
            c = containers_pb2.Container(id=f"c{i}", runtime={"name": "io.containerd.runc.v2"}, spec=spec_any(),
                                         labels={"client": str(i)})
            stub.Create(containers_pb2.CreateContainerRequest(container=c), metadata=NS, timeout=60)
            for _ in range(3):
                stub.List(containers_pb2.ListContainersRequest(), metadata=NS, timeout=60)
            got = stub.Get(containers_pb2.GetContainerRequest(id=f"c{i}"), metadata=NS, timeout=60)
            assert got.container.labels["client"] == str(i)
            return i

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        done = list(pool.map(client, range(n), timeout=120))
    assert len(done) == n
    with channel(daemon) as ch:
        stub = containers_pb2_grpc.ContainersStub(ch)
        ids = {c.id for c in stub.List(containers_pb2.ListContainersRequest(), metadata=NS, timeout=30).containers}
        assert ids >= {f"c{i}" for i in range(n)}
        for i in range(n):
            stub.Delete(containers_pb2.DeleteContainerRequest(id=f"c{i}"), metadata=NS, timeout=30)
    assert time.monotonic() - t0 < 120
    alive(daemon)

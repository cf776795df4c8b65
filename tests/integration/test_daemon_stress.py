"""corrald under hostile and concurrent clients: garbage bytes, wrong message types, huge
messages, a hundred concurrent clients listing and creating. The daemon must answer errors
and stay up, never deadlock."""

import concurrent.futures
import os
import shutil
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


@pytest.mark.skipif(shutil.which("ctr") is None or shutil.which("containerd-shim-runc-v2") is None,
                    reason="ctr and containerd-shim-runc-v2 (containerd package) are needed")
def test_long_lived_calls_do_not_starve_short_ones(daemon):
    """150 subscribers and 150 waiters (more than the 128 workers of ordinary calls) hold
    their calls open; short calls still answer at once, and the waits end with the task."""
    from corral.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
    from corral.api.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
    from corral.api.containerd.services.version.v1 import version_pb2_grpc
    from corral.busybox import make_oci_archive
    from google.protobuf import empty_pb2
    n = int(os.environ.get("CORRAL_STRESS_STREAMS", "150"))
    image = "docker.io/library/busybox:latest"
    archive = os.path.join(daemon.dir, "busybox.tar")
    make_oci_archive(archive, image)
    daemon.ctr("images", "import", archive, namespace="stress")
    cid = "waited"
    ns = [("containerd-namespace", "stress")]
    channels, subs, waits = [], [], []
    try:
        daemon.ctr("run", "-d", image, cid, "sleep", "1000", namespace="stress")
        for i in range(n):
            ch = channel(daemon)
            channels.append(ch)
            subs.append(events_pb2_grpc.EventsStub(ch).Subscribe(
                events_pb2.SubscribeRequest(filters=[f'topic=="/tasks/exit",event.container_id=="{cid}"']),
                timeout=120))
            waits.append(tasks_pb2_grpc.TasksStub(ch).Wait.future(
                tasks_pb2.WaitRequest(container_id=cid), metadata=ns, timeout=120))
        time.sleep(2)
        assert not any(w.done() for w in waits), [w.exception() for w in waits if w.done()][:3]
        with channel(daemon) as ch:
            for _ in range(5):
                t0 = time.monotonic()
                version_pb2_grpc.VersionStub(ch).Version(empty_pb2.Empty(), timeout=10)
                containers_pb2_grpc.ContainersStub(ch).List(containers_pb2.ListContainersRequest(), metadata=ns,
                                                            timeout=10)
                tasks = tasks_pb2_grpc.TasksStub(ch).List(tasks_pb2.ListTasksRequest(), metadata=ns, timeout=10)
                assert time.monotonic() - t0 < 2, f"short calls took {time.monotonic() - t0:.1f}s"
                assert [t.id for t in tasks.tasks] == [cid]
        t0 = time.monotonic()
        assert daemon.ctr("tasks", "ls", namespace="stress").returncode == 0
        assert time.monotonic() - t0 < 2
        # waiters that go away free their threads (the shim's wait is cancelled, no polling)
        gone = waits[:10]
        for w in gone:
            w.cancel()
        assert all(w.cancelled() for w in gone)
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace="stress")
        codes = [w.result(timeout=30).exit_status for w in waits[10:]]
        assert codes == [137] * (n - 10)
        got = 0
        for s in subs:
            env = next(s)
            assert env.topic == "/tasks/exit"
            got += 1
        assert got == n
    finally:
        for s in subs:
            s.cancel()
        for w in waits:
            w.cancel()
        for ch in channels:
            ch.close()
        daemon.ctr("tasks", "kill", "-s", "SIGKILL", cid, namespace="stress", check=False)
        daemon.ctr("tasks", "delete", "-f", cid, namespace="stress", check=False)
        daemon.ctr("containers", "rm", cid, namespace="stress", check=False)
    alive(daemon)

"""corrald's events service: publish, forward and subscribe with containerd's filters, and the
ttrpc endpoint shims forward to."""

import asyncio
import threading
import time

import grpc
import pytest
from google.protobuf import any_pb2

from corral.api.containerd.events import task_pb2 as task_events
from corral.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from tests.helpers.corrald import Corrald


@pytest.fixture(scope="module")
def daemon():
    d = Corrald()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def packed(msg):
    return any_pb2.Any(type_url=msg.DESCRIPTOR.full_name, value=msg.SerializeToString())


def collect(stub, filters, n, out, ready):
    stream = stub.Subscribe(events_pb2.SubscribeRequest(filters=filters), timeout=20)
    ready.set()
    try:
        for env in stream:
            out.append(env)
            if len(out) >= n:
                stream.cancel()
                return
    except grpc.RpcError:
        pass


def test_publish_subscribe_with_filters(daemon):
    with grpc.insecure_channel("unix:" + daemon.sock) as ch:
        stub = events_pb2_grpc.EventsStub(ch)
        got, ready = [], threading.Event()
        t = threading.Thread(target=collect, args=(
            stub, ['topic=="/tasks/oom",namespace==evns', 'event.container_id==wanted'], 2, got, ready))
        t.start()
        ready.wait(5)
        time.sleep(0.3)
        md = [("containerd-namespace", "evns")]
        stub.Publish(events_pb2.PublishRequest(topic="/tasks/oom", event=packed(task_events.TaskOOM(container_id="a"))),
                     metadata=md, timeout=10)
        stub.Publish(events_pb2.PublishRequest(topic="/tasks/paused", event=packed(task_events.TaskPaused(container_id="b"))),
                     metadata=md, timeout=10)
        env = events_pb2.Envelope(namespace="other", topic="/tasks/resumed",
                                  event=packed(task_events.TaskResumed(container_id="wanted")))
        stub.Forward(events_pb2.ForwardRequest(envelope=env), timeout=10)
        t.join(20)
        assert [(e.namespace, e.topic) for e in got] == [("evns", "/tasks/oom"), ("other", "/tasks/resumed")]
        assert got[0].timestamp.seconds > 0
        with pytest.raises(grpc.RpcError) as e:
            stub.Publish(events_pb2.PublishRequest(topic="no-slash", event=packed(task_events.TaskOOM())),
                         metadata=md, timeout=10)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_ttrpc_forward_endpoint(daemon):
    """What a shim does: Events.Forward over ttrpc on <address>.ttrpc."""
    from corral.api.containerd.services.events.ttrpc.v1 import events_pb2 as ttrpc_events
    from corral.ttrpc.client import Client
    from google.protobuf import empty_pb2

    with grpc.insecure_channel("unix:" + daemon.sock) as ch:
        stub = events_pb2_grpc.EventsStub(ch)
        got, ready = [], threading.Event()
        t = threading.Thread(target=collect, args=(stub, ['topic=="/tasks/exit"'], 1, got, ready))
        t.start()
        ready.wait(5)
        time.sleep(0.3)

        async def forward():
            c = await Client.connect(daemon.sock + ".ttrpc", timeout=5)
            try:
                env = ttrpc_events.Envelope(namespace="default", topic="/tasks/exit",
                                            event=packed(task_events.TaskExit(container_id="x", exit_status=3)))
                await c.call("containerd.services.events.ttrpc.v1.Events", "Forward",
                             ttrpc_events.ForwardRequest(envelope=env), empty_pb2.Empty, timeout=5)
            finally:
                await c.close()
        asyncio.run(forward())
        t.join(20)
        assert len(got) == 1
        ev = task_events.TaskExit.FromString(got[0].event.value)
        assert ev.container_id == "x" and ev.exit_status == 3

"""Events: the exchange (publish, forward, subscribe with filters) and its gRPC service
containerd.services.events.v1.Events."""

import logging
import queue
import re
import threading
import time

from google.protobuf import any_pb2, symbol_database

from corral.api.containerd.services.events.v1 import events_pb2, events_pb2_grpc
# imported so their types can be decoded for event.* filters
from corral.api.containerd.events import (container_pb2, content_pb2, image_pb2,  # noqa: F401
                                          namespace_pb2, snapshot_pb2, task_pb2)
from google.protobuf import empty_pb2

from . import filters
from .errors import InvalidArgument
from .grpcutil import long_lived, namespace, rpc, ts, validate_name

log = logging.getLogger("corrald")

_TOPIC_PART = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
# a slow subscriber is dropped rather than let it hold memory without bound
_QUEUE_LIMIT = 10000


def validate_topic(topic):
    if not topic or not topic.startswith("/") or not all(_TOPIC_PART.match(p) for p in topic[1:].split("/")):
        raise InvalidArgument(f"invalid event topic {topic!r}: use /component/action style paths")
    return topic


def pack(message):
    """An Any with containerd's type URL convention (the bare full name)."""
    a = any_pb2.Any()
    a.type_url = message.DESCRIPTOR.full_name
    a.value = message.SerializeToString()
    return a


def _decode(event):
    name = event.type_url.rsplit("/", 1)[-1]
    try:
        cls = symbol_database.Default().GetSymbol(name)
    except KeyError:
        return None
    msg = cls()
    try:
        msg.ParseFromString(event.value)
    except Exception:
        return None
    return msg


def _envelope_getter(env):
    decoded = []

    def get(path):
        if path == ("namespace",):
            return env.namespace
        if path == ("topic",):
            return env.topic
        if path and path[0] == "event" and len(path) >= 2:
            if not decoded:
                decoded.append(_decode(env.event))
            msg = decoded[0]
            for part in path[1:]:
                if msg is None:
                    return None
                if not hasattr(msg, "DESCRIPTOR") or part not in msg.DESCRIPTOR.fields_by_name:
                    return None
                msg = getattr(msg, part)
            return None if msg is None or hasattr(msg, "DESCRIPTOR") else str(msg)
        return None
    return get


class Exchange:
    """Fan-out of envelopes to subscribers; publishing never blocks on a subscriber."""

    def __init__(self):
        self._lock = threading.Lock()
        self._subs = []

    def publish(self, ns, topic, message):
        """Publish a protobuf event message (or an Any) in a namespace."""
        validate_name("namespace", ns)
        validate_topic(topic)
        event = message if isinstance(message, any_pb2.Any) else pack(message)
        env = events_pb2.Envelope(timestamp=ts(time.time()), namespace=ns, topic=topic, event=event)
        self.forward(env)

    def forward(self, env):
        validate_name("namespace", env.namespace)
        validate_topic(env.topic)
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(env)

    def subscribe(self, filter_strings=()):
        sub = _Subscription(self, filters.parse(filter_strings))
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub):
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)


class _Subscription:
    def __init__(self, exchange, match):
        self.exchange = exchange
        self.match = match
        self.q = queue.Queue()
        self.dropped = False

    def offer(self, env):
        if self.dropped or not self.match(_envelope_getter(env)):
            return
        if self.q.qsize() >= _QUEUE_LIMIT:
            self.dropped = True
            log.warning("event subscriber too slow, dropped after %d queued events", _QUEUE_LIMIT)
            self.close()
            return
        self.q.put(env)

    def get(self, timeout):
        """The next envelope, or None after timeout or once the subscription is closed."""
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        self.exchange._remove(self)
        self.q.put(None)  # wakes a get() that waits without a timeout


class EventsService(events_pb2_grpc.EventsServicer):
    def __init__(self, exchange):
        self.exchange = exchange

    @rpc
    def Publish(self, request, context):
        self.exchange.publish(namespace(context), request.topic, request.event)
        return empty_pb2.Empty()

    @rpc
    def Forward(self, request, context):
        self.exchange.forward(request.envelope)
        return empty_pb2.Empty()

    @long_lived
    @rpc
    def Subscribe(self, request, context):
        sub = self.exchange.subscribe(list(request.filters))
        context.add_callback(sub.close)  # the client went away: wakes the wait below (no polling)
        try:
            while context.is_active() and not sub.dropped:
                env = sub.get(None)
                if env is not None:
                    yield env
        finally:
            sub.close()

    def add_to_server(self, server):
        events_pb2_grpc.add_EventsServicer_to_server(self, server)

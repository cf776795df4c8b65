"""Task events to the daemon: containerd.services.events.ttrpc.v1.Events/Forward on its ttrpc
address, one at a time in the order they were published, retried while the daemon is away."""

import asyncio
import sys
import time

from google.protobuf.any_pb2 import Any

from corral.ttrpc.client import Client
from corral.ttrpc.errors import TtrpcError

SERVICE = "containerd.services.events.ttrpc.v1.Events"
RETRY_FOR = 60.0  # a daemon restart fits in this window; after it an event is dropped


class Publisher:
    def __init__(self, address, namespace):
        self.address = address
        self.namespace = namespace
        self.queue = asyncio.Queue()
        self.client = None
        self.task = asyncio.get_running_loop().create_task(self._run()) if address else None

    def publish(self, topic, event):
        if self.task is None:
            return
        any_msg = Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString())
        self.queue.put_nowait((topic, any_msg, time.time_ns()))

    async def _run(self):
        from corral.api.containerd.services.events.ttrpc.v1.events_pb2 import Envelope, ForwardRequest
        from google.protobuf.empty_pb2 import Empty

        while True:
            topic, any_msg, at = await self.queue.get()
            req = ForwardRequest(envelope=Envelope(namespace=self.namespace, topic=topic, event=any_msg))
            req.envelope.timestamp.FromNanoseconds(at)
            deadline = time.monotonic() + RETRY_FOR
            delay = 0.05
            while True:
                try:
                    if self.client is None:
                        self.client = await Client.connect(self.address, timeout=5)
                    await self.client.call(SERVICE, "Forward", req, Empty, timeout=10,
                                           metadata={"containerd-namespace-ttrpc": self.namespace})
                    break
                except (TtrpcError, OSError, asyncio.TimeoutError) as e:
                    await self._drop_client()
                    if time.monotonic() > deadline:
                        print(f"shim: event {topic} dropped: {e}", file=sys.stderr)
                        break
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            self.queue.task_done()

    async def _drop_client(self):
        if self.client is not None:
            client, self.client = self.client, None
            try:
                await client.close()
            except Exception:
                pass

    async def flush(self, timeout=5):
        if self.task is None:
            return
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except asyncio.TimeoutError:
            pass

    async def close(self):
        if self.task is not None:
            self.task.cancel()
        await self._drop_client()

"""corral.Client's high-level surface, as a Python user: images, containers, exec, events."""

import uuid

import pytest

from corral.client import Client
from corral.containers.api import ContainerError
from corral.containers.image import ImageNotFound
from corral.containers.stdio import FifoIO
from tests.e2e.conftest import leftovers


@pytest.fixture
def client(corrald):
    c = Client(corrald.sock)
    c.data_root = corrald.root
    yield c
    c.close()


def test_images_list_get_tag_remove(client):
    names = [i.name for i in client.images.list()]
    assert "docker.io/library/busybox:latest" in names
    img = client.images.get("busybox")
    assert img.config()["config"]["Cmd"] == ["sh"] and img.chain_id().startswith("sha256:")
    tagged = client.images.tag("busybox", "e2e/copy:1")
    assert tagged.name == "docker.io/e2e/copy:1" and tagged.digest == img.digest
    client.images.remove("e2e/copy:1")
    with pytest.raises(ImageNotFound):
        client.images.get("e2e/copy:1")


def test_container_lifecycle(client, corrald):
    before = leftovers(corrald)
    name = "api-" + uuid.uuid4().hex[:8]
    ctr = client.containers.run("busybox", ["sh", "-c", "echo hi; echo oops >&2; sleep 100"], name=name,
                                network="none", env=["K=v"])
    try:
        assert client.containers.get(name).id == ctr.id
        assert ctr.status == "running" and ctr.pid > 0
        assert name in [c.name for c in client.containers.list()]
        # exec with output through FIFOs
        io = FifoIO(ctr.id)
        try:
            chunks = []
            import os
            r, w = os.pipe()
            io.start_output(w, w)
            exec_id = ctr.exec(["sh", "-c", "echo $K"], io=io)
            fut = client.wait_task_future(ctr.id, exec_id)
            client.start_task(ctr.id, exec_id)
            assert fut.result(timeout=30).exit_status == 0
            io.finish()
            os.close(w)
            chunks.append(os.read(r, 100))
            os.close(r)
            client.delete_process(ctr.id, exec_id)
            assert chunks == [b"v\n"]
        finally:
            io.close()
        assert ctr.stop(timeout=1) == 137
        assert ctr.reload().status == "exited" and ctr.exit_code == 137
        assert ctr.logs() == "hi\noops\n"
        assert ctr.inspect()["State"]["ExitCode"] == 137
        with pytest.raises(ContainerError):
            client.containers.create("busybox", name=name)
    finally:
        ctr.remove(force=True)
    assert leftovers(corrald) == before

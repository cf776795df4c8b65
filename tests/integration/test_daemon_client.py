"""corral.client.Client against a running corrald."""

import pytest

from corral.client import Client, ClientError
from tests.helpers.corrald import Corrald


@pytest.fixture(scope="module")
def daemon():
    d = Corrald()
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def test_client_basics(daemon):
    with Client(daemon.sock, namespace="cli") as c:
        import corral
        assert c.version()["version"] == corral.__version__
        assert any(p.id == "containers" for p in c.plugins())
        c.create_container("one", {"ociVersion": "1.0.2", "process": {"args": ["true"]}}, labels={"a": "b"})
        assert [x.id for x in c.containers()] == ["one"]
        assert [x.id for x in c.containers("labels.a==b")] == ["one"]
        assert c.containers("labels.a==c") == []
        assert c.container("one").runtime.name == "io.containerd.runc.v2"
        assert "cli" in [n.name for n in c.namespaces()]
        assert c.with_namespace("elsewhere").containers() == []
        with pytest.raises(ClientError) as e:
            c.container("missing")
        assert e.value.code == "NOT_FOUND"
        with pytest.raises(ClientError) as e:
            c.delete_namespace("cli")
        assert e.value.code == "FAILED_PRECONDITION"
        c.delete_container("one")
        assert c.containers() == []
        assert c.tasks() == [] and c.images() == [] and c.content() == []

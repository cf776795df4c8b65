"""Push from the content store to a real registry: monolithic, chunked, mounts, skips, auth."""

import os
import uuid

import pytest

from corral.content.store import ContentStore
from corral.images.pull import pull
from corral.images.push import push
from corral.images.reference import parse
from corral.remotes.registry import HostConfig, Registry
from tests.helpers.imagebuild import Image, busybox_layer, layer, push_index
from tests.helpers.registry import AuthProxy, LocalRegistry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def registry():
    reg = LocalRegistry().start()
    yield reg
    reg.stop()


@pytest.fixture
def store(tmpdir_root):
    return ContentStore(os.path.join(tmpdir_root, "content"))


def client(host, **kw):
    return Registry(hosts={host: HostConfig(plain_http=True)}, credentials=kw.pop("credentials", {}), **kw)


def repo():
    return "push/" + uuid.uuid4().hex[:10]


def _seed(registry, store, img):
    """Put `img` into `store` by pulling it from a scratch repository."""
    r_ = repo()
    img.push(registry.host, r_, "seed")
    pull(f"{registry.host}/{r_}:seed", store, client(registry.host))
    return r_


@pytest.mark.parametrize("chunk", [0, 64 << 10])
def test_push_then_pull_same_digests(registry, store, tmpdir_root, chunk):
    img = Image([busybox_layer(), layer([("file", "f", os.urandom(300000))])])
    src = _seed(registry, store, img)
    dst = repo()
    c = client(registry.host)
    res = push(f"{registry.host}/{dst}:v1", img.manifest_desc, store, c, chunk_size=chunk)
    assert set(res.values()) == {"uploaded"}
    # pushing again only checks (HEAD) and skips
    assert set(push(f"{registry.host}/{dst}:v2", img.manifest_desc, store, c).values()) == {"exists"}
    # cross-repository mount
    res = push(f"{registry.host}/{repo()}:v1", img.manifest_desc, store, c, mount_from=src)
    assert set(res.values()) == {"mounted"}
    other = ContentStore(os.path.join(tmpdir_root, "other"))
    r = pull(f"{registry.host}/{dst}:v1", other, c)
    assert r.target["digest"] == img.digest
    for d in img.blobs:
        assert open(other.path(d), "rb").read() == img.blobs[d]


def test_push_index(registry, store):
    a = Image([layer([("file", "a", b"a")])])
    b = Image([layer([("file", "b", b"b")])], arch="s390x")
    r_ = repo()
    idx = push_index(registry.host, r_, "multi", [a, b])
    c = client(registry.host)
    # fetch both platforms into the store
    pull(f"{registry.host}/{r_}:multi", store, c)
    pull(f"{registry.host}/{r_}:multi", store, c, platform="linux/s390x")
    root = c.resolve(parse(f"{registry.host}/{r_}:multi"))
    dst = repo()
    push(f"{registry.host}/{dst}:multi", root, store, c, chunk_size=1000)
    assert c.resolve(parse(
        f"{registry.host}/{dst}:multi"))["digest"] == idx


def test_push_with_bearer_auth(registry, store):
    img = Image([layer([("file", "x", b"x")])])
    _seed(registry, store, img)
    proxy = AuthProxy(registry, "bearer").start()
    try:
        c = client(proxy.host, credentials={proxy.host: ("alice", "s3cret")})
        push(f"{proxy.host}/{repo()}:v1", img.manifest_desc, store, c, chunk_size=100)
        assert proxy.token_requests >= 1
    finally:
        proxy.stop()

"""Pull from a real registry (docker-registry on 127.0.0.1) into a content store and snapshots."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from corral.content.store import ContentStore
from corral.images import mediatypes as mt
from corral.images.errors import ImageError
from corral.images.pull import pull
from corral.images.unpack import chain_ids
from corral.metadata.db import MetadataDB
from corral.remotes.auth import save_credentials
from corral.remotes.registry import HostConfig, Registry
from corral.snapshots.mount import mount_all, unmount_all
from corral.snapshots.native import NativeSnapshotter
from corral.snapshots.overlay import OverlaySnapshotter
from tests.helpers.imagebuild import Image, busybox_layer, layer, push_index
from tests.helpers.registry import AuthProxy, LocalRegistry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def registry():
    reg = LocalRegistry().start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def busybox():
    return busybox_layer()


@pytest.fixture
def env(tmpdir_root):
    class Env:
        store = ContentStore(os.path.join(tmpdir_root, "content"))
        db = MetadataDB(os.path.join(tmpdir_root, "meta.db"))
        snaps = {}

        def snapshotter(self, kind="overlay"):
            if kind not in self.snaps:
                cls = OverlaySnapshotter if kind == "overlay" else NativeSnapshotter
                self.snaps[kind] = cls(os.path.join(tmpdir_root, kind))
            return self.snaps[kind]

        def client(self, host, **kw):
            return Registry(hosts={host: HostConfig(plain_http=True)}, credentials={}, **kw)

        def rootfs(self, sn, chain):
            """Mount a view of `chain`; returns the mount point (unmounted at teardown)."""
            key = "view-" + uuid.uuid4().hex[:8]
            mounts = sn.view(key, chain)
            d = os.path.join(tmpdir_root, key)
            os.mkdir(d)
            mount_all(mounts, d)
            self.mounted.append(d)
            return d

        mounted = []
    e = Env()
    yield e
    for d in e.mounted:
        unmount_all(d)
    for sn in e.snaps.values():
        sn.close()
    e.db.close()


def repo():
    return "test/" + uuid.uuid4().hex[:10]


LAYER2 = [("dir", "etc"), ("file", "etc/motd", b"hello corral\n", 0o640, 7, 8),
          ("file", "etc/gone", b"x"), ("dir", "data"), ("file", "data/old", b"old"),
          ("hardlink", "etc/motd.hard", "etc/motd"), ("symlink", "etc/rel", "motd"),
          ("fifo", "run-fifo"), ("chardev", "dev-null", 1, 3),
          ("xattr-file", "etc/attr", b"a", {"user.corral": "yes"})]
LAYER3 = [("whiteout", "etc/gone"), ("opaque", "data"), ("file", "data/new", b"new"),
          ("file", "etc/motd", b"changed\n", 0o644)]


@pytest.mark.parametrize("kind,compression,docker", [("overlay", "gzip", False), ("native", "zstd", False),
                                                      ("overlay", "", True)])
def test_pull_unpack_record(registry, busybox, env, kind, compression, docker):
    img = Image([busybox, layer(LAYER2), layer(LAYER3)], compression=compression, docker=docker)
    name = f"{registry.host}/{repo()}:v1"
    img.push(registry.host, name.split("/", 1)[1].split(":")[0], "v1")
    sn = env.snapshotter(kind)
    r = pull(name, env.store, env.client(registry.host), sn, db=env.db)
    assert r.target["digest"] == img.digest and r.config["digest"] == img.config_desc["digest"]
    assert r.chain_id == chain_ids(img.config["rootfs"]["diff_ids"])[-1]
    rec = env.db.get_image("default", name)
    assert rec.target.digest == img.digest and rec.target.media_type == img.manifest["mediaType"]
    for d in img.blobs:
        assert env.store.exists(d)
    root = env.rootfs(sn, r.chain_id)
    assert open(f"{root}/etc/motd").read() == "changed\n"
    assert open(f"{root}/etc/motd.hard").read() == "hello corral\n"   # the old inode, linked in layer 2
    assert os.stat(f"{root}/etc/motd.hard").st_uid == 7
    assert os.readlink(f"{root}/etc/rel") == "motd"
    assert not os.path.exists(f"{root}/etc/gone")
    assert sorted(os.listdir(f"{root}/data")) == ["new"]
    assert os.getxattr(f"{root}/etc/attr", "user.corral") == b"yes"
    assert os.lstat(f"{root}/dev-null").st_rdev == os.makedev(1, 3)
    assert os.path.exists(f"{root}/bin/busybox")
    assert subprocess.run(["chroot", root, "/bin/sh", "-c", "cat /etc/motd"], capture_output=True,
                          timeout=10).stdout == b"changed\n"
    # a second pull is a no-op that still answers
    assert pull(name, env.store, env.client(registry.host), sn, db=env.db).chain_id == r.chain_id
    assert len([i for i in sn.list() if i.kind.name == "COMMITTED"]) == 3
    assert [i.name for i in sn.list() if i.kind.name == "ACTIVE"] == []


@pytest.mark.parametrize("docker", [False, True])
def test_index_platforms_and_digest(registry, busybox, env, docker):
    host = mt.host_platform()
    other = "arm64" if host["architecture"] != "arm64" else "amd64"
    mine = Image([busybox, layer([("file", "which", b"host")])], docker=docker)
    theirs = Image([busybox, layer([("file", "which", b"other")])], arch=other, docker=docker)
    r_ = repo()
    idx = push_index(registry.host, r_, "multi", [theirs, mine], docker=docker)
    sn = env.snapshotter()
    c = env.client(registry.host)
    r = pull(f"{registry.host}/{r_}:multi", env.store, c, sn)
    assert r.target["digest"] == idx and r.target["mediaType"] == (mt.DOCKER_LIST if docker else mt.OCI_INDEX)
    assert r.manifest["digest"] == mine.digest
    assert open(env.rootfs(sn, r.chain_id) + "/which").read() == "host"
    r2 = pull(f"{registry.host}/{r_}@{idx}", env.store, c, sn, platform=f"linux/{other}")
    assert r2.manifest["digest"] == theirs.digest
    assert open(env.rootfs(sn, r2.chain_id) + "/which").read() == "other"
    with pytest.raises(ImageError, match="no manifest for platform linux/s390x"):
        pull(f"{registry.host}/{r_}:multi", env.store, c, sn, platform="linux/s390x")


@pytest.mark.parametrize("mode", ["bearer", "basic"])
def test_auth(registry, busybox, env, tmpdir_root, mode):
    img = Image([busybox])
    r_ = repo()
    img.push(registry.host, r_, "v1")
    proxy = AuthProxy(registry, mode).start()
    try:
        name = f"{proxy.host}/{r_}:v1"
        with pytest.raises(ImageError, match="401|log in|credentials"):
            pull(name, env.store, env.client(proxy.host), None)
        auth_file = os.path.join(tmpdir_root, "auth.json")
        save_credentials(proxy.host, "alice", "s3cret", auth_file)
        c = Registry(hosts={proxy.host: HostConfig(plain_http=True)}, auth_file=auth_file)
        r = pull(name, env.store, c, env.snapshotter())
        assert r.target["digest"] == img.digest
        if mode == "bearer":
            assert proxy.token_requests == 2      # one refused (no credentials), one for the whole pull
    finally:
        proxy.stop()


def test_retries_and_range_resume(registry, env):
    big = os.urandom(3 << 20)
    img = Image([layer([("file", "blob", big)])], compression="")
    r_ = repo()
    img.push(registry.host, r_, "v1")
    proxy = AuthProxy(registry, "none").start()
    try:
        proxy.faults.update({"fail_5xx": 3, "cut_blob_after": 1 << 20})
        r = pull(f"{proxy.host}/{r_}:v1", env.store, env.client(proxy.host), env.snapshotter())
        assert r.target["digest"] == img.digest
        assert any(rng == f"bytes={1 << 20}-" for _, _, rng in proxy.requests), proxy.requests
        assert open(env.rootfs(env.snapshotter(), r.chain_id) + "/blob", "rb").read() == big
    finally:
        proxy.stop()


def test_resume_refuses_a_part_that_starts_elsewhere(registry, env):
    # The download is cut after 1 MiB; the resumed request asks for bytes=1048576- and the
    # registry answers 206 with a part that starts 4096 bytes earlier. Appended, it would
    # corrupt the blob: corral drops it and fetches the whole blob again.
    big = os.urandom(3 << 20)
    img = Image([layer([("file", "blob", big)])], compression="")
    r_ = repo()
    img.push(registry.host, r_, "v1")
    proxy = AuthProxy(registry, "none").start()
    try:
        proxy.faults.update({"cut_blob_after": 1 << 20, "shift_range": 4096})
        r = pull(f"{proxy.host}/{r_}:v1", env.store, env.client(proxy.host), env.snapshotter())
        assert "shift_range" not in proxy.faults            # the bad part was sent
        blob_gets = [rng for method, path, rng in proxy.requests
                     if method == "GET" and path.endswith(img.layer_descs[0]["digest"])]
        assert blob_gets == [None, f"bytes={1 << 20}-", None], blob_gets
        assert env.store.exists(img.layer_descs[0]["digest"])
        assert open(env.rootfs(env.snapshotter(), r.chain_id) + "/blob", "rb").read() == big
    finally:
        proxy.stop()


def test_content_range_start():
    from corral.remotes.registry import _range_start
    assert _range_start("bytes 1048576-3145727/3145728") == 1 << 20
    assert _range_start("bytes 0-9/*") == 0
    assert _range_start("Bytes 7-9/10") == 7
    for bad in (None, "", "bytes */100", "items 1-2/3", "bytes -5/10", "bytes x-1/2"):
        assert _range_start(bad) is None, bad


def test_registry_htpasswd_basic_auth(busybox, env, tmpdir_root):
    reg = LocalRegistry(tls=True, htpasswd=("bob", "pw-1")).start()
    try:
        from corral.images.push import push
        c = Registry(hosts={reg.host: HostConfig(ca_file=reg.cert)}, credentials={reg.host: ("bob", "pw-1")})
        src = ContentStore(os.path.join(tmpdir_root, "src"))
        from corral.images.importexport import import_oci
        from tests.helpers.imagebuild import write_oci_layout
        img = Image([busybox])
        write_oci_layout(os.path.join(tmpdir_root, "layout"), img)
        [(_, desc)] = import_oci(os.path.join(tmpdir_root, "layout"), src)
        push(f"{reg.host}/auth/app:v1", desc, src, c)
        r = pull(f"{reg.host}/auth/app:v1", env.store, c, env.snapshotter())
        assert r.target["digest"] == img.digest
        wrong = Registry(hosts={reg.host: HostConfig(ca_file=reg.cert)}, credentials={reg.host: ("bob", "nope")})
        with pytest.raises(ImageError, match="401"):
            pull(f"{reg.host}/auth/app:v1", env.store, wrong, None)
    finally:
        reg.stop()


def test_https_default_and_ca(busybox, env):
    reg = LocalRegistry(tls=True).start()
    try:
        img = Image([busybox])
        import ssl
        img.push(reg.host, "tls/app", "v1", ssl_context=ssl.create_default_context(cafile=reg.cert))
        name = f"{reg.host}/tls/app:v1"
        with pytest.raises(ImageError, match="certificate of .* is not trusted"):
            pull(name, env.store, Registry(credentials={}), None)       # https, the CA unknown
        with pytest.raises(ImageError):
            pull(name, env.store, env.client(reg.host), None)           # plain http to a TLS port
        r = pull(name, env.store, Registry(hosts={reg.host: HostConfig(ca_file=reg.cert)}, credentials={}),
                 env.snapshotter())
        assert r.target["digest"] == img.digest
    finally:
        reg.stop()


def test_blob_redirects(registry, busybox, env):
    img = Image([busybox, layer([("file", "r", b"redirected")])])
    r_ = repo()
    img.push(registry.host, r_, "v1")
    proxy = AuthProxy(registry, "bearer").start()
    try:
        proxy.faults["redirect_blobs"] = True
        c = Registry(hosts={proxy.host: HostConfig(plain_http=True)},
                     credentials={proxy.host: ("alice", "s3cret")})
        r = pull(f"{proxy.host}/{r_}:v1", env.store, c, env.snapshotter())
        assert open(env.rootfs(env.snapshotter(), r.chain_id) + "/r").read() == "redirected"
        assert any("/blobs/" in p for m, p, _ in proxy.requests if m == "GET")
    finally:
        proxy.stop()


def _no_leftovers(env, sn, good_chains):
    infos = [i for i in sn.list() if not i.name.startswith("view-")]
    assert {i.name for i in infos} <= set(good_chains), infos
    assert all(i.kind.name == "COMMITTED" for i in infos)
    assert env.store.list_statuses() == [] or all(s.offset == 0 for s in env.store.list_statuses())


@pytest.fixture
def host_dir(tmpdir_root):
    d = os.path.join(tmpdir_root, "hostdir")
    os.mkdir(d)
    with open(os.path.join(d, "secret"), "w") as f:
        f.write("host")
    return d


def _bad_images(busybox, host_dir):
    yield "dotdot", [busybox, layer([("file", "../../../../../../.." + host_dir + "/pwned", b"x")])], "'..'"
    yield "abs-symlink", [busybox, layer([("symlink", "evil", host_dir)]),
                          layer([("file", "evil/pwned", b"x")])], "symlink"
    yield "hardlink-host", [busybox, layer([("hardlink", "stolen", host_dir + "/secret")])], "not in the image"


@pytest.mark.parametrize("case", ["dotdot", "abs-symlink", "hardlink-host"])
@pytest.mark.parametrize("kind", ["overlay", "native"])
def test_hostile_layers(registry, busybox, env, host_dir, case, kind):
    layers, match = next((l, m) for c, l, m in _bad_images(busybox, host_dir) if c == case)
    img = Image(layers)
    r_ = repo()
    img.push(registry.host, r_, "bad")
    sn = env.snapshotter(kind)
    name = f"{registry.host}/{r_}:bad"
    with pytest.raises(ImageError, match=match):
        pull(name, env.store, env.client(registry.host), sn, db=env.db)
    assert os.listdir(host_dir) == ["secret"] and open(f"{host_dir}/secret").read() == "host"
    assert env.db.list_images("default") == []
    good = chain_ids(img.config["rootfs"]["diff_ids"])[:-1]
    _no_leftovers(env, sn, good)
    # a good image pulls fine afterwards
    ok = Image([busybox, layer([("file", "fine", b"ok")])])
    ok.push(registry.host, r_, "good")
    r = pull(f"{registry.host}/{r_}:good", env.store, env.client(registry.host), sn, db=env.db)
    assert open(env.rootfs(sn, r.chain_id) + "/fine").read() == "ok"


def test_bad_bytes_truncated_missing(registry, busybox, env):
    import gzip
    sn = env.snapshotter()
    c = env.client(registry.host)
    r_ = repo()
    # 1. the registry (through a proxy) sends bytes that do not match the digest
    img = Image([busybox, layer([("file", "f", b"data" * 1000)])])
    img.push(registry.host, r_, "corrupt")
    proxy = AuthProxy(registry, "none").start()
    try:
        proxy.faults["corrupt"] = img.layer_descs[1]["digest"]
        with pytest.raises(Exception, match="sha256|digest"):
            pull(f"{proxy.host}/{r_}:corrupt", env.store, env.client(proxy.host), sn, db=env.db)
    finally:
        proxy.stop()
    assert not env.store.exists(img.layer_descs[1]["digest"])
    _no_leftovers(env, sn, chain_ids(img.config["rootfs"]["diff_ids"])[:1])
    # 2. a truncated layer (its digest is of the truncated bytes, so only unpacking can tell)
    raw = layer([("file", "big", os.urandom(200000))])
    trunc = Image([busybox, raw])
    blob = gzip.compress(raw)[:-5000]
    d = trunc.layer_descs[1]["digest"]
    del trunc.blobs[d]
    from tests.helpers.imagebuild import sha, push_blob, put_manifest
    trunc.layer_descs[1].update(digest=sha(blob), size=len(blob))
    trunc.blobs[sha(blob)] = blob
    mbytes = json.dumps(trunc.manifest).encode()
    for dg, data in trunc.blobs.items():
        push_blob(registry.host, r_, dg, data)
    put_manifest(registry.host, r_, "trunc", mbytes, trunc.manifest["mediaType"])
    with pytest.raises(ImageError, match="corrupt|truncated|complete"):
        pull(f"{registry.host}/{r_}:trunc", env.store, c, sn, db=env.db)
    # 3. a manifest pointing to a blob the registry does not have
    gone = Image([busybox, layer([("file", "g", b"g")])])
    gone.push(registry.host, r_, "missing")
    import http.client
    h = http.client.HTTPConnection(registry.host, timeout=10)
    h.request("DELETE", f"/v2/{r_}/blobs/{gone.layer_descs[1]['digest']}")
    assert h.getresponse().status == 202
    with pytest.raises(ImageError, match="404|BLOB_UNKNOWN|not found|unknown"):
        pull(f"{registry.host}/{r_}:missing", env.store, c, sn, db=env.db)
    assert env.db.list_images("default") == []
    _no_leftovers(env, sn, chain_ids(img.config["rootfs"]["diff_ids"])[:1])
    r = pull(f"{registry.host}/{r_}:corrupt", env.store, c, sn, db=env.db)
    assert r.target["digest"] == img.digest


KILL_SCRIPT = """
import sys
from corral.content.store import ContentStore
from corral.images.pull import pull
from corral.remotes.registry import HostConfig, Registry
host, name, root = sys.argv[1:4]
pull(name, ContentStore(root), Registry(hosts={host: HostConfig(plain_http=True)}, credentials={}))
"""


def test_killed_pull_resumes(registry, env, tmpdir_root):
    big = os.urandom(4 << 20)
    img = Image([layer([("file", "blob", big)])], compression="")
    r_ = repo()
    img.push(registry.host, r_, "v1")
    proxy = AuthProxy(registry, "none").start()
    proc = None
    try:
        proxy.faults["throttle"] = 0.01           # ~6 MB/s: the layer takes well over a second
        name = f"{proxy.host}/{r_}:v1"
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, proxy.host, name, env.store.root],
                                cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        deadline = time.monotonic() + 30
        offset = 0
        while time.monotonic() < deadline and offset < (1 << 20):
            st = env.store.list_statuses()
            offset = max([s.offset for s in st] or [0])
            time.sleep(0.05)
        assert offset >= 1 << 20, "the pull did not start"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proxy.faults.pop("throttle")
        partial = max(s.offset for s in env.store.list_statuses())
        r = pull(name, env.store, env.client(proxy.host), env.snapshotter())
        ranges = [rng for _, _, rng in proxy.requests if rng]
        assert ranges and int(ranges[-1][6:-1]) >= partial - (1 << 20), ranges
        assert open(env.rootfs(env.snapshotter(), r.chain_id) + "/blob", "rb").read() == big
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proxy.stop()

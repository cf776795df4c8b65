"""Leases and garbage collection over real stores: metadata DB, content store, overlay
snapshotter (no mounts needed)."""

import hashlib
import json
import os
import time

import pytest

from corral.content.store import ContentStore
from corral.gc import collect, label_refs, parse_time
from corral.metadata.content import NamespacedContentStore
from corral.metadata.db import MetadataDB
from corral.metadata.errors import NotFound
from corral.metadata.snapshots import NamespacedSnapshotter
from corral.metadata.types import Container, Descriptor, Image, Runtime
from corral.snapshots.overlay import OverlaySnapshotter

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Stack:
    def __init__(self, root):
        self.db = MetadataDB(os.path.join(root, "meta.db"))
        self.store = ContentStore(os.path.join(root, "content"))
        self.backend = OverlaySnapshotter(os.path.join(root, "overlayfs"))
        self.content = NamespacedContentStore(self.db, self.store)
        self.snaps = NamespacedSnapshotter(self.db, "overlayfs", self.backend)

    def put(self, ns, data, labels=None, lease=None):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        w = self.content.writer(ns, "ref-" + d[7:19], expected=d, lease=lease)
        w.write(data)
        return w.commit(labels=labels)

    def gc(self, **kw):
        return collect(self.db, self.store, {"overlayfs": self.backend}, **kw)

    def close(self):
        self.backend.close()
        self.db.close()


@pytest.fixture
def stack(tmpdir_root):
    s = Stack(tmpdir_root)
    yield s
    s.close()


def make_image(s, ns, name, tag):
    """An image as an unpacker leaves it: layer and config blobs, a manifest referencing them
    by label, the config referencing the unpacked snapshot by label."""
    layer = s.put(ns, f"layer of {tag}".encode())
    s.snaps.prepare(ns, f"extract-{tag}", "")
    s.snaps.commit(ns, f"chain-{tag}", f"extract-{tag}")
    config = s.put(ns, f"config of {tag}".encode(),
                   labels={"containerd.io/gc.ref.snapshot.overlayfs": f"chain-{tag}"})
    manifest = s.put(ns, json.dumps({"tag": tag}).encode(),
                     labels={"containerd.io/gc.ref.content.config": config,
                             "containerd.io/gc.ref.content.l.0": layer})
    s.db.create_image(ns, Image(name, Descriptor(MANIFEST, manifest, 10)))
    return layer, config, manifest


def test_referenced_kept_unreferenced_removed(stack):
    s = stack
    layer, config, manifest = make_image(s, "default", "img:1", "one")
    orphan = s.put("default", b"orphan blob")
    s.snaps.prepare("default", "junk-base", "")
    s.snaps.commit("default", "junk", "junk-base")
    s.snaps.prepare("default", "junk-child", "junk")
    s.snaps.prepare("default", "c1-rootfs", "chain-one")
    s.db.create_container("default", Container(id="c1", runtime=Runtime("io.containerd.runc.v2"),
                                               image="img:1", snapshotter="overlayfs",
                                               snapshot_key="c1-rootfs"))
    res = s.gc()
    assert res.blobs == [orphan] and ("default", orphan) in res.content
    assert sorted(k for _, _, k in res.snapshots) == ["junk", "junk-child"]
    assert {i.digest for i in s.store.list()} == {layer, config, manifest}
    assert {i.name for i in s.snaps.list("default")} == {"chain-one", "c1-rootfs"}
    assert len(s.backend.list()) == 2

    s.db.delete_container("default", "c1")
    res = s.gc()
    assert [k for _, _, k in res.snapshots] == ["c1-rootfs"] and res.blobs == []

    s.db.delete_image("default", "img:1")
    res = s.gc()
    assert sorted(res.blobs) == sorted([layer, config, manifest])
    assert s.store.list() == [] and s.backend.list() == [] and s.snaps.list("default") == []
    assert os.listdir(os.path.join(s.backend.root, "snapshots")) == []


def test_shared_blob_kept_while_any_namespace_references_it(stack):
    s = stack
    d = s.put("a", b"shared layer")
    assert s.put("b", b"shared layer") == d  # b writes it too (proof of possession)
    with pytest.raises(NotFound):
        s.content.info("c", d)
    s.db.create_image("b", Image("img", Descriptor(MANIFEST, d, 12)))
    res = s.gc()
    assert res.content == [("a", d)] and res.blobs == []
    assert s.store.exists(d) and s.content.info("b", d).size == 12
    s.db.delete_image("b", "img")
    res = s.gc()
    assert res.blobs == [d] and not s.store.exists(d)


def test_leases_protect_and_expire(stack):
    s = stack
    s.db.create_lease("default", "pull-1")
    d = s.put("default", b"leased blob", lease="pull-1")
    s.snaps.prepare("default", "leased-snap", "", lease="pull-1")
    w = s.content.writer("default", "in-flight", lease="pull-1")
    w.write(b"partial")
    w.close()
    w2 = s.content.writer("default", "abandoned")
    w2.write(b"nobody holds me")
    w2.close()
    assert {r.type for r in s.db.list_lease_resources("default", "pull-1")} == {
        "content", "snapshots/overlayfs", "ingests"}

    res = s.gc(ingest_grace=0)
    assert res.blobs == [] and res.snapshots == []
    assert res.ingests == ["default/abandoned"]
    assert [st.ref for st in s.content.list_statuses("default")] == ["in-flight"]
    assert s.store.exists(d) and s.snaps.stat("default", "leased-snap")

    s.db.delete_lease("default", "pull-1")
    res = s.gc(ingest_grace=0)
    assert res.blobs == [d] and [k for _, _, k in res.snapshots] == ["leased-snap"]
    assert res.ingests == ["default/in-flight"]

    past = time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(time.time() - 60))
    s.db.create_lease("default", "old", {"containerd.io/gc.expire": past})
    d2 = s.put("default", b"expired lease blob", lease="old")
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    s.db.create_lease("default", "young", {"containerd.io/gc.expire": future})
    d3 = s.put("default", b"live lease blob", lease="young")
    res = s.gc()
    assert res.leases == [("default", "old")] and res.blobs == [d2] and s.store.exists(d3)


def test_gc_root_label_and_snapshot_content_refs(stack):
    s = stack
    kept = s.put("default", b"rooted", labels={"containerd.io/gc.root": "1"})
    via_snapshot = s.put("default", b"referenced by a snapshot label")
    s.snaps.prepare("default", "base", "")
    s.snaps.commit("default", "base-c", "base",
                   labels={"containerd.io/gc.root": "", "containerd.io/gc.ref.content": via_snapshot})
    s.snaps.prepare("default", "child", "base-c", labels={"containerd.io/gc.root": "x"})
    res = s.gc()
    assert res.blobs == [] and res.snapshots == []
    assert s.store.exists(kept) and s.store.exists(via_snapshot)


def test_label_parsing():
    assert parse_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert parse_time("1970-01-01T01:00:01.5+01:00") == 1_500_000_000
    assert parse_time("2024-01-01T00:00:00.123456789Z") % 1_000_000_000 == 123456789
    assert parse_time("garbage") is None
    refs = label_refs({"containerd.io/gc.ref.content.m.0": "sha256:x",
                       "containerd.io/gc.ref.content": "sha256:y",
                       "containerd.io/gc.ref.snapshot.overlayfs": "k1",
                       "containerd.io/gc.ref.snapshot.native/1": "k2",
                       "unrelated": "z"})
    assert sorted(refs) == sorted([("content", "sha256:x"), ("content", "sha256:y"),
                                   ("snapshot", "overlayfs", "k1"), ("snapshot", "native", "k2")])


def test_references_in_store_labels_count(stack):
    """An unpacker that labels blobs on the bare store and only adds plain namespace
    references still has its image's blobs kept."""
    s = stack
    layer = s.put("default", b"layer")
    config = s.put("default", b"config")
    manifest = s.put("default", b"manifest")
    s.store.update(manifest, {"containerd.io/gc.ref.content.config": config,
                              "containerd.io/gc.ref.content.l.0": layer})
    s.db.create_image("default", Image("img", Descriptor(MANIFEST, manifest, 8)))
    assert s.gc().blobs == []
    s.db.delete_image("default", "img")
    assert sorted(s.gc().blobs) == sorted([layer, config, manifest])


def test_fresh_orphans_kept_for_the_grace_period(stack):
    """A blob or backend snapshot with no reference yet (a writer between its commit and its
    reference) survives a pass until it is older than orphan_grace."""
    s = stack
    w = s.store.writer("bare")
    w.write(b"committed on the bare store")
    d = w.commit()
    s.backend.prepare("default/x/bare-snap", "")
    res = s.gc()
    assert res.blobs == [] and s.store.exists(d) and len(s.backend.list()) == 1
    res = s.gc(orphan_grace=0)
    assert res.blobs == [d] and s.backend.list() == []

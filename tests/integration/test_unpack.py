"""Unpack onto real snapshotters: many layers, the parallel overlay path against the native one,
layers that need their lowers, failures that leave nothing behind, resuming a partial chain."""

import os

import pytest

from corral.archive.compression import compress
from corral.content.store import ContentStore
from corral.images import mediatypes as mt
from corral.images.errors import ImageError
from corral.images.unpack import chain_ids, unpack
from corral.snapshots.mount import mount_all, unmount_all
from corral.snapshots.native import NativeSnapshotter
from corral.snapshots.overlay import OverlaySnapshotter
from tests.helpers.imagebuild import busybox_layer, layer, sha
from tests.interop.test_images_tools import tree_facts

pytestmark = pytest.mark.timeout(180)


def put_layers(store, raws):
    descs = []
    for raw in raws:
        blob = compress("gzip", raw)
        w = store.writer("t-" + sha(blob))
        w.write(blob)
        try:
            w.commit(len(blob), sha(blob))
        except Exception as e:
            assert type(e).__name__ == "AlreadyExists"
        descs.append({"mediaType": mt.OCI_LAYER_GZIP, "digest": sha(blob), "size": len(blob)})
    return descs, [sha(r) for r in raws]


def many_layers(n):
    raws = [busybox_layer(), layer([("dir", "opt", 0o711), ("dir", "opt/app", 0o750),
                                    ("file", "opt/app/base", b"base", 0o644, 5, 6),
                                    ("dir", "opt/other"), ("file", "opt/other/old", b"old")])]
    for i in range(n - 2):
        entries = [("file", f"opt/app/f{i}", f"layer {i}".encode())]   # parent dirs implicit
        if i % 5 == 1:
            entries.append(("hardlink", f"opt/app/link{i}", "opt/app/base"))   # into a lower layer
        if i % 7 == 3:
            entries.append(("whiteout", f"opt/app/f{i - 1}"))
        if i % 11 == 4:
            entries += [("opaque", "opt/other"), ("file", f"opt/other/after-opaque{i}", b"o")]
        raws.append(layer(entries))
    return raws


@pytest.fixture
def env(tmpdir_root):
    store = ContentStore(os.path.join(tmpdir_root, "content"))
    sns = []

    def snapshotter(kind):
        sn = (OverlaySnapshotter if kind == "overlay" else NativeSnapshotter)(os.path.join(tmpdir_root, kind))
        sns.append(sn)
        return sn

    mounted = []

    def view(sn, chain, name):
        d = os.path.join(tmpdir_root, name)
        os.mkdir(d)
        mount_all(sn.view(name, chain), d)
        mounted.append(d)
        return d

    yield store, snapshotter, view
    for d in mounted:
        unmount_all(d)
    for sn in sns:
        sn.close()


def test_many_layers_overlay_parallel_equals_native(env):
    store, snapshotter, view = env
    descs, diffs = put_layers(store, many_layers(40))
    ov, nat = snapshotter("overlay"), snapshotter("native")
    c1 = unpack(store, ov, descs, diffs, workers=2)
    c2 = unpack(store, nat, descs, diffs)
    assert c1 == c2 == chain_ids(diffs)[-1]
    a, b = tree_facts(view(ov, c1, "v-ov")), tree_facts(view(nat, c2, "v-nat"))
    assert a == b
    assert a["opt/app"][1:4] == (0o750, 0, 0)
    assert [n for n in os.listdir(ov.root) if n.startswith("corral-unpack-")] == []


def test_failure_leaves_nothing_and_resume(env, tmpdir_root):
    store, snapshotter, view = env
    host = os.path.join(tmpdir_root, "host")
    os.mkdir(host)
    raws = many_layers(8)
    bad = raws[:5] + [layer([("symlink", "opt/escape", host)]), layer([("file", "opt/escape/x", b"x")])] + raws[5:]
    descs, diffs = put_layers(store, bad)
    ov = snapshotter("overlay")
    with pytest.raises(ImageError, match="symlink"):
        unpack(store, ov, descs, diffs)
    assert os.listdir(host) == []
    infos = ov.list()
    assert all(i.kind.name == "COMMITTED" for i in infos)
    assert {i.name for i in infos} <= set(chain_ids(diffs)[:6])
    assert [n for n in os.listdir(ov.root) if n.startswith("corral-unpack-")] == []
    # a good image sharing the first layers resumes on the committed prefix
    descs, diffs = put_layers(store, raws)
    before = {i.name for i in ov.list()}
    top = unpack(store, ov, descs, diffs)
    assert before <= {i.name for i in ov.list()}
    assert open(view(ov, top, "v") + "/opt/app/base").read() == "base"


def test_diff_id_mismatch(env):
    store, snapshotter, _ = env
    descs, diffs = put_layers(store, [layer([("file", "a", b"a")]), layer([("file", "b", b"b")])])
    for kind in ("overlay", "native"):
        sn = snapshotter(kind)
        with pytest.raises(ImageError, match="diff|corrupt"):
            unpack(store, sn, descs, [diffs[0], diffs[0]])
        assert [i.name for i in sn.list()] == [diffs[0]]

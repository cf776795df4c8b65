"""Metadata DB: records per namespace, transactions, migrations, concurrency."""

import shutil
import sqlite3
import tempfile
import threading
import os

import pytest

from corral.metadata import db as metadata_db
from corral.metadata.db import SCHEMA_VERSION, MetadataDB, migrate
from corral.metadata.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from corral.metadata.types import (Any, Container, Descriptor, Image, Resource, Runtime,
                                   SnapshotRef)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
MT = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def dbdir():
    d = tempfile.mkdtemp(prefix="corral-meta-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def db(dbdir):
    db = MetadataDB(os.path.join(dbdir, "meta.db"))
    yield db
    db.close()


def test_namespaces(db):
    db.create_namespace("ns1", {"a": "b"})
    with pytest.raises(AlreadyExists):
        db.create_namespace("ns1")
    with pytest.raises(InvalidArgument):
        db.create_namespace("bad/name")
    assert db.update_namespace("ns1", {"c": "d"}, ["labels.c"]).labels == {"a": "b", "c": "d"}
    db.create_image("ns2", Image("img", Descriptor(MT, D1, 10)))  # implicit namespace
    assert [n.name for n in db.list_namespaces()] == ["ns1", "ns2"]
    with pytest.raises(FailedPrecondition, match="images"):
        db.delete_namespace("ns2")
    db.delete_image("ns2", "img")
    db.delete_namespace("ns2")
    with pytest.raises(NotFound):
        db.get_namespace("ns2")


def test_images(db):
    img = db.create_image("default", Image("docker.io/library/busybox:latest",
                                           Descriptor(MT, D1, 123, {"x": "y"}), {"l": "1"}))
    assert img.target.digest == D1 and img.target.annotations == {"x": "y"} and img.created_at > 0
    with pytest.raises(AlreadyExists):
        db.create_image("default", img)
    db.create_image("other", Image(img.name, Descriptor(MT, D2, 5)))  # namespaces are separate
    upd = db.update_image("default", Image(img.name, Descriptor(MT, D2, 7), {"l": "2", "m": "3"}),
                          ["labels.m"])
    assert upd.labels == {"l": "1", "m": "3"} and upd.target.digest == D1
    upd = db.update_image("default", Image(img.name, Descriptor(MT, D2, 7)), ["target"])
    assert upd.target.digest == D2 and upd.target.size == 7 and upd.updated_at >= upd.created_at
    with pytest.raises(InvalidArgument):
        db.create_image("default", Image("bad", Descriptor(MT, "sha256:zz", 1)))
    assert [i.name for i in db.list_images("default")] == [img.name]
    assert db.list_images("default", lambda i: i.labels.get("m") == "nope") == []
    db.delete_image("default", img.name)
    with pytest.raises(NotFound):
        db.get_image("default", img.name)
    assert db.get_image("other", img.name).target.digest == D2


def test_containers(db):
    ct = Container(id="c1", runtime=Runtime("io.containerd.runc.v2", Any("type/opts", b"\x01\x02")),
                   labels={"a": "b"}, image="busybox", spec=Any("types.containerd.io/spec", b"{}"),
                   snapshotter="overlayfs", snapshot_key="c1-snap",
                   extensions={"ext": Any("t", b"\x00\xff")}, sandbox="sb1")
    got = db.create_container("default", ct)
    assert got.runtime.options.value == b"\x01\x02" and got.extensions["ext"].value == b"\x00\xff"
    assert got.spec.value == b"{}" and got.sandbox == "sb1" and got.snapshot_key == "c1-snap"
    with pytest.raises(AlreadyExists):
        db.create_container("default", ct)
    ct.labels = {"n": "1"}
    ct.spec = Any("types.containerd.io/spec", b'{"v":1}')
    got = db.update_container("default", ct, ["labels.n", "spec"])
    assert got.labels == {"a": "b", "n": "1"} and got.spec.value == b'{"v":1}'
    ct.runtime = Runtime("other")
    with pytest.raises(InvalidArgument, match="immutable"):
        db.update_container("default", ct)
    with pytest.raises(InvalidArgument):
        db.update_container("default", ct, ["runtime"])
    db.delete_container("default", "c1")
    with pytest.raises(NotFound):
        db.delete_container("default", "c1")


def test_content_and_snapshot_refs(db):
    db.add_content("a", D1, {"k": "v"})
    db.add_content("b", D1)
    with pytest.raises(AlreadyExists):
        db.add_content("a", D1)
    db.add_content("a", D1, exist_ok=True)
    assert db.content_namespaces(D1) == ["a", "b"]
    assert db.update_content("a", D1, {"z": "1"}, ["labels.z"]).labels == {"k": "v", "z": "1"}
    db.delete_content("b", D1)
    assert db.content_namespaces(D1) == ["a"]
    db.add_snapshot("a", SnapshotRef("overlayfs", "layer1", "a/1/layer1"))
    db.add_snapshot("a", SnapshotRef("overlayfs", "active", "a/2/active", parent="layer1"))
    with pytest.raises(NotFound):
        db.add_snapshot("a", SnapshotRef("overlayfs", "x", "a/3/x", parent="missing"))
    with pytest.raises(FailedPrecondition):
        db.delete_snapshot("a", "overlayfs", "layer1")
    db.delete_snapshot("a", "overlayfs", "active")
    db.delete_snapshot("a", "overlayfs", "layer1")
    assert db.list_snapshots("a") == []


def test_leases(db):
    db.create_lease("default", "l1", {"containerd.io/gc.expire": "2099-01-01T00:00:00Z"})
    with pytest.raises(AlreadyExists):
        db.create_lease("default", "l1")
    db.add_lease_resource("default", "l1", Resource(D1, "content"))
    db.add_lease_resource("default", "l1", Resource("snap1", "snapshots/overlayfs"))
    db.add_lease_resource("default", "l1", Resource("ingest-ref", "ingests"))
    with pytest.raises(InvalidArgument):
        db.add_lease_resource("default", "l1", Resource("x", "bogus"))
    assert set(db.list_lease_resources("default", "l1")) == {
        Resource(D1, "content"), Resource("snap1", "snapshots/overlayfs"), Resource("ingest-ref", "ingests")}
    db.delete_lease_resource("default", "l1", Resource(D1, "content"))
    assert len(db.list_lease_resources("default", "l1")) == 2
    db.delete_lease("default", "l1")
    with pytest.raises(NotFound):
        db.list_lease_resources("default", "l1")


def test_transaction_rolls_back(db):
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.create_image("default", Image("i1", Descriptor(MT, D1, 1)))
            db.add_content("default", D1)
            raise RuntimeError("boom")
    with pytest.raises(NotFound):
        db.get_image("default", "i1")
    assert db.list_content("default") == []
    # A failing statement inside a transaction undoes the earlier ones.
    db.create_image("default", Image("i2", Descriptor(MT, D1, 1)))
    with pytest.raises(AlreadyExists):
        with db.transaction():
            db.add_content("default", D2)
            db.create_image("default", Image("i2", Descriptor(MT, D1, 1)))
    assert db.list_content("default") == []


def test_migration_from_version_0_and_1(dbdir):
    path = os.path.join(dbdir, "old.db")
    open(path, "wb").close()  # version 0: an empty file
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO containers (namespace, id, runtime_name, created_at, updated_at) "
                 "VALUES ('default', 'old', 'io.containerd.runc.v2', 1, 1)")
    conn.close()
    db = MetadataDB(path)
    try:
        assert db.schema_version() == SCHEMA_VERSION
        ct = db.get_container("default", "old")
        assert ct.sandbox == "" and ct.runtime.name == "io.containerd.runc.v2"
    finally:
        db.close()
    db = MetadataDB(os.path.join(dbdir, "fresh.db"))
    assert db.schema_version() == SCHEMA_VERSION
    db.close()


def test_concurrent_threads(db):
    errors = []

    def work(t):
        try:
            for i in range(25):
                with db.transaction():
                    db.create_image("default", Image(f"img-{t}-{i}", Descriptor(MT, D1, i)))
                    db.add_content("default", D1, exist_ok=True)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(db.list_images("default")) == 150
    assert len(db.list_content("default")) == 1


PROC_SCRIPT = r"""
import sys
from corral.metadata.db import MetadataDB
from corral.metadata.types import Image, Descriptor
db = MetadataDB(sys.argv[1])
for i in range(30):
    with db.transaction():
        db.create_image("default", Image(f"p{sys.argv[2]}-{i}", Descriptor("m", "sha256:" + "3" * 64, i)))
"""


def test_concurrent_processes(dbdir):
    import subprocess
    import sys
    path = os.path.join(dbdir, "shared.db")
    procs = [subprocess.Popen([sys.executable, "-c", PROC_SCRIPT, path, str(p)]) for p in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    db = MetadataDB(path)
    try:
        assert len(db.list_images("default")) == 120
    finally:
        db.close()


def test_journal_mode_switch_is_retried_when_locked(dbdir, monkeypatch):
    """SQLite refuses the switch to WAL at once, without its busy handler, while another
    process creates or closes the same file (seen in CI); opening retries it."""
    real_connect = sqlite3.connect
    refusals = []

    class Refusing:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, sql, *args):
            if sql == "PRAGMA journal_mode=WAL" and len(refusals) < 3:
                refusals.append(sql)
                raise sqlite3.OperationalError("database is locked")
            return self.conn.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.conn, name)

    monkeypatch.setattr(metadata_db.sqlite3, "connect",
                        lambda *a, **kw: Refusing(real_connect(*a, **kw)))
    db = MetadataDB(os.path.join(dbdir, "retried.db"))
    try:
        assert len(refusals) == 3
        assert db._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()

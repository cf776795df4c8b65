"""Content store: verified commits, resumable ingests, concurrent writers, labels."""

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import shutil
import threading
import time

import pytest

from corral.content.store import (AlreadyExists, ContentStore, DigestMismatch, RefLocked,
                                  SizeMismatch)
from corral.metadata.errors import InvalidArgument, NotFound


@pytest.fixture
def store():
    d = tempfile.mkdtemp(prefix="corral-content-")
    yield ContentStore(d)
    shutil.rmtree(d, ignore_errors=True)


def dg(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_write_commit_info_read(store):
    data = b"hello corral\n" * 1000
    w = store.writer("ref1", total=len(data), expected=dg(data))
    w.write(data[:100])
    w.write(data[100:])
    assert w.offset == len(data)
    assert w.digest() == dg(data)
    assert w.commit(len(data), dg(data), labels={"a": "b"}) == dg(data)
    info = store.info(dg(data))
    assert info.size == len(data) and info.labels == {"a": "b"} and info.created_at > 0
    with store.open(dg(data)) as f:
        assert f.read() == data
    with store.reader_at(dg(data)) as r:
        assert r.size == len(data) and r.read_at(5, 6) == b"corra"
    assert store.path(dg(data)).endswith("/blobs/sha256/" + hashlib.sha256(data).hexdigest())
    assert store.list_statuses() == []
    assert [i.digest for i in store.list()] == [dg(data)]


def test_digest_mismatch_commits_nothing(store):
    data, wrong = b"real bytes", dg(b"other bytes")
    w = store.writer("bad", expected=wrong)
    w.write(data)
    with pytest.raises(DigestMismatch, match="expected"):
        w.commit()
    assert not store.exists(wrong) and not store.exists(dg(data))
    assert store.list() == [] and store.list_statuses() == []
    # The ref is free again and a good write works.
    w = store.writer("bad", expected=dg(data))
    w.write(data)
    w.commit()
    assert store.exists(dg(data))


def test_size_mismatch_keeps_partial(store):
    data = b"x" * 100
    w = store.writer("sz", total=100)
    w.write(data[:40])
    with pytest.raises(SizeMismatch):
        w.commit()
    assert store.list() == []
    w.write(data[40:])
    w.commit(100, dg(data))
    assert store.exists(dg(data))


def test_resume_after_close(store):
    data = os.urandom(300_000)
    w = store.writer("resume", total=len(data), expected=dg(data))
    w.write(data[:123_456])
    w.close()
    st = store.status("resume")
    assert st.offset == 123_456 and st.total == len(data) and st.expected == dg(data)
    w = store.writer("resume")
    assert w.offset == 123_456 and w.total == len(data)
    w.write(data[w.offset:])
    w.commit()
    assert store.info(dg(data)).size == len(data)
    with pytest.raises(NotFound):
        store.status("resume")


def _write_forever(root, ref, chunk, ready):
    s = ContentStore(root)
    w = s.writer(ref)
    w.write(chunk)
    os.fsync(w._fd)
    ready.set()
    while True:
        time.sleep(0.1)


def test_resume_after_writer_process_killed(store):
    data = os.urandom(200_000)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_write_forever, args=(store.root, "killed", data[:77_777], ready))
    p.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RefLocked):
            store.writer("killed")
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
    w = store.writer("killed", expected=dg(data))
    assert w.offset == 77_777
    w.write(data[w.offset:])
    assert w.commit() == dg(data)


def test_same_ref_locked_in_threads(store):
    w = store.writer("locked")
    with pytest.raises(RefLocked, match="ref locked"):
        store.writer("locked")
    with pytest.raises(RefLocked):
        store.abort("locked")
    w.close()
    store.abort("locked")
    with pytest.raises(NotFound):
        store.abort("locked")


def test_already_exists(store):
    data = b"dup"
    w = store.writer("one")
    w.write(data)
    w.commit()
    with pytest.raises(AlreadyExists):
        store.writer("two", expected=dg(data))
    w = store.writer("three")
    w.write(data)
    with pytest.raises(AlreadyExists):
        w.commit()
    assert store.list_statuses() == []


def test_concurrent_writers_same_blob_threads(store):
    data = os.urandom(1 << 20)
    results, errors = [], []

    def run(i):
        try:
            w = store.writer(f"t{i}")
            for off in range(0, len(data), 65536):
                w.write(data[off:off + 65536])
            results.append(w.commit(expected=dg(data)))
        except AlreadyExists:
            results.append("exists")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert results.count(dg(data)) == 1 and results.count("exists") == 7
    with store.open(dg(data)) as f:
        assert f.read() == data
    assert store.list_statuses() == []


WRITER_SCRIPT = r"""
import sys
from corral.content.store import ContentStore, AlreadyExists
s = ContentStore(sys.argv[1])
data = bytes(range(256)) * 8192
w = s.writer(sys.argv[2])
for off in range(0, len(data), 4096):
    w.write(data[off:off + 4096])
try:
    print(w.commit())
except AlreadyExists:
    print("exists")
"""


def test_concurrent_writers_same_blob_processes(store):
    data = bytes(range(256)) * 8192
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, store.root, f"p{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs.count(dg(data)) == 1 and outs.count("exists") == 3
    assert store.info(dg(data)).size == len(data)


def test_labels_update_and_delete(store):
    w = store.writer("l")
    w.write(b"labelled")
    d = w.commit(labels={"a": "1", "b": "2"})
    assert store.update(d, {"b": "3", "c": "4"}, ["labels.b", "labels.c"]).labels == {"a": "1", "b": "3", "c": "4"}
    assert store.update(d, {}, ["labels.a"]).labels == {"b": "3", "c": "4"}
    assert store.update(d, {"z": "9"}).labels == {"z": "9"}
    assert store.list(filter=lambda i: i.labels.get("z") == "9")[0].digest == d
    store.delete(d)
    with pytest.raises(NotFound):
        store.info(d)
    with pytest.raises(NotFound):
        store.delete(d)


def test_sha512_and_bad_digests(store):
    data = b"sha512 data"
    d512 = "sha512:" + hashlib.sha512(data).hexdigest()
    w = store.writer("s512", expected=d512)
    w.write(data)
    assert w.commit() == d512
    assert store.info(d512).size == len(data)
    for bad in ("sha256:abc", "md5:" + "0" * 32, "nope", "sha256:" + "G" * 64):
        with pytest.raises(InvalidArgument):
            store.info(bad)


def test_failed_resume_keeps_partial_and_new_failure_leaves_nothing(store):
    w = store.writer("keep", total=10)
    w.write(b"12345")
    w.close()
    with pytest.raises(Exception, match="differs"):
        store.writer("keep", total=99)
    assert store.status("keep").offset == 5
    store.abort("keep")
    with pytest.raises(InvalidArgument):
        store.writer("fresh", expected="sha256:short")
    assert os.listdir(os.path.join(store.root, "ingest")) == []

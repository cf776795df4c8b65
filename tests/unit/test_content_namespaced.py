"""The content store as namespaces see it: separate references and labels on shared blobs."""

import hashlib
import os
import shutil
import tempfile

import pytest

from corral.content.store import AlreadyExists, ContentStore, DigestMismatch, RefLocked
from corral.metadata.content import NamespacedContentStore
from corral.metadata.db import MetadataDB
from corral.metadata.errors import NotFound
from corral.metadata.filters import parse


@pytest.fixture
def cs():
    d = tempfile.mkdtemp(prefix="corral-nscontent-")
    db = MetadataDB(os.path.join(d, "meta.db"))
    yield NamespacedContentStore(db, ContentStore(os.path.join(d, "content")))
    db.close()
    shutil.rmtree(d, ignore_errors=True)


def dg(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def test_namespaces_see_only_their_content(cs):
    data = b"blob for two namespaces"
    w = cs.writer("a", "r1", expected=dg(data))
    w.write(data)
    assert w.commit(labels={"owner": "a"}) == dg(data)
    with pytest.raises(NotFound):
        cs.info("b", dg(data))
    with pytest.raises(NotFound):
        cs.open("b", dg(data))
    with pytest.raises(AlreadyExists):
        cs.writer("a", "r2", expected=dg(data))
    # b proves possession by writing the same bytes; the disk holds one blob.
    w = cs.writer("b", "r1", expected=dg(data))
    w.write(data)
    w.commit(labels={"owner": "b"})
    assert cs.info("a", dg(data)).labels == {"owner": "a"}
    assert cs.info("b", dg(data)).labels == {"owner": "b"}
    assert len(cs.store.list()) == 1
    assert [i.digest for i in cs.list("b", parse(["labels.owner==b"]))] == [dg(data)]
    assert cs.update("a", dg(data), {"x": "1"}, ["labels.x"]).labels == {"owner": "a", "x": "1"}
    cs.delete("a", dg(data))
    with pytest.raises(NotFound):
        cs.info("a", dg(data))
    with cs.open("b", dg(data)) as f:
        assert f.read() == data


def test_wrong_bytes_from_second_namespace_refused(cs):
    data = b"the real bytes"
    w = cs.writer("a", "r", expected=dg(data))
    w.write(data)
    w.commit()
    w = cs.writer("b", "r", expected=dg(data))
    w.write(b"not the real bytes")
    with pytest.raises(DigestMismatch):
        w.commit()
    with pytest.raises(NotFound):
        cs.info("b", dg(data))


def test_ingests_are_per_namespace(cs):
    wa = cs.writer("a", "same-ref")
    wb = cs.writer("b", "same-ref")  # no conflict across namespaces
    wa.write(b"aa")
    with pytest.raises(RefLocked):
        cs.writer("a", "same-ref")
    wa.close()
    wb.close()
    assert [s.ref for s in cs.list_statuses("a")] == ["same-ref"]
    assert cs.status("a", "same-ref").offset == 2
    cs.abort("a", "same-ref")
    assert cs.list_statuses("a") == [] and len(cs.list_statuses("b")) == 1
    cs.abort("b", "same-ref")

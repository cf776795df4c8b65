"""The content store as namespaces see it (containerd's metadata content store).

Blobs are shared on disk; each namespace holds its own reference and labels in the metadata
DB. A namespace sees only the blobs it references, and must write a blob itself to gain a
reference, even when another namespace already has it (proof of possession, as containerd).
Deleting removes the namespace's reference; the blob goes when the GC finds no namespace
referencing it. Ingest refs are kept apart per namespace ("<ns>/<ref>" in the backend).
"""

from corral.content.store import AlreadyExists, Info, Status
from corral.metadata.errors import NotFound
from corral.metadata.types import Resource


def ingest_key(ns, ref):
    return f"{ns}/{ref}"


class NamespacedContentStore:
    def __init__(self, db, store):
        self.db = db
        self.store = store

    def _info(self, ns, digest):
        ref = self.db.get_content(ns, digest)
        try:
            blob = self.store.info(digest)
        except NotFound:
            raise NotFound(f"content {digest}: not found in namespace {ns}") from None
        return Info(digest=digest, size=blob.size, created_at=ref.created_at,
                    updated_at=ref.updated_at, labels=ref.labels)

    def info(self, ns, digest):
        return self._info(ns, digest)

    def update(self, ns, digest, labels, fieldpaths=None):
        self.db.update_content(ns, digest, labels, fieldpaths)
        return self._info(ns, digest)

    def list(self, ns, filter=None):
        out = []
        for ref in self.db.list_content(ns):
            try:
                info = self._info(ns, ref.digest)
            except NotFound:
                continue
            if filter is None or filter(info):
                out.append(info)
        return out

    def walk(self, ns, fn, filter=None):
        for info in self.list(ns, filter):
            fn(info)

    def delete(self, ns, digest):
        """Drop the namespace's reference; the GC removes the blob once nobody references it."""
        self.db.delete_content(ns, digest)

    def open(self, ns, digest):
        self.db.get_content(ns, digest)
        return self.store.open(digest)

    def reader_at(self, ns, digest):
        self.db.get_content(ns, digest)
        return self.store.reader_at(digest)

    def path(self, ns, digest):
        self.db.get_content(ns, digest)
        return self.store.path(digest)

    def writer(self, ns, ref, total=None, expected=None, lease=None):
        """A writer whose commit adds the blob to namespace `ns` (and to `lease`, if given;
        the ingest itself is held by the lease meanwhile)."""
        if expected:
            try:
                self.db.get_content(ns, expected)
                raise AlreadyExists(f"content {expected}: already exists in namespace {ns}")
            except NotFound:
                pass
        held = Resource(ref, "ingests")  # lease resources are per namespace already
        added = bool(lease) and held not in self.db.list_lease_resources(ns, lease)
        if added:
            self.db.add_lease_resource(ns, lease, held)
        # expected is checked at commit, so a blob present in another namespace is still
        # written (and verified) before this namespace may reference it.
        try:
            w = self.store.writer(ingest_key(ns, ref), total=total)
        except BaseException:
            if added:
                self.db.delete_lease_resource(ns, lease, held)
            raise
        return NamespacedWriter(self, ns, ref, w, expected, lease)

    def _strip(self, ns, st):
        return Status(ref=st.ref[len(ns) + 1:], offset=st.offset, total=st.total,
                      expected=st.expected, started_at=st.started_at, updated_at=st.updated_at)

    def status(self, ns, ref):
        return self._strip(ns, self.store.status(ingest_key(ns, ref)))

    def list_statuses(self, ns, filter=None):
        prefix = ns + "/"
        out = [self._strip(ns, s) for s in self.store.list_statuses(lambda s: s.ref.startswith(prefix))]
        return [s for s in out if filter is None or filter(s)]

    def abort(self, ns, ref):
        self.store.abort(ingest_key(ns, ref))


class NamespacedWriter:
    def __init__(self, owner, ns, ref, writer, expected, lease):
        self._owner, self.ns, self.ref = owner, ns, ref
        self._w, self.expected, self.lease = writer, expected, lease

    @property
    def offset(self):
        return self._w.offset

    @property
    def total(self):
        return self._w.total

    def write(self, data):
        return self._w.write(data)

    def digest(self):
        return self._w.digest()

    def truncate(self, size):
        self._w.truncate(size)

    def status(self):
        return self._owner.status(self.ns, self.ref)

    def commit(self, size=None, expected=None, labels=None):
        expected = expected or self.expected
        db = self._owner.db
        # The DB transaction spans the blob's commit so the GC (which runs in one
        # transaction) never sees the blob without its reference.
        with db.transaction():
            try:
                digest = self._w.commit(size, expected)
            except AlreadyExists:
                digest = expected or self._w.digest()
            db.add_content(self.ns, digest, labels)
            if self.lease:
                db.add_lease_resource(self.ns, self.lease, Resource(digest, "content"))
                db.delete_lease_resource(self.ns, self.lease, Resource(self.ref, "ingests"))
        return digest

    def close(self):
        self._w.close()

    def abort(self):
        self._w.abort()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

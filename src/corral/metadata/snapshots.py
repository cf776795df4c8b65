"""A snapshotter as namespaces see it (containerd's metadata snapshotter).

Each namespace has its own keys; the backend snapshot behind key K of namespace N is named
"N/<unique>/K", so namespaces never collide and a key can be reused after removal. Labels
live in the metadata DB; kinds, mounts and usage come from the backend.
"""

import uuid

from corral.metadata.errors import NotFound
from corral.metadata.types import Resource, SnapshotRef
from corral.snapshots.base import Info


def backend_key(ns, key):
    return f"{ns}/{uuid.uuid4().hex[:12]}/{key}"


class NamespacedSnapshotter:
    def __init__(self, db, name, backend):
        self.db = db
        self.name = name  # e.g. "overlayfs"; lease resources use "snapshots/<name>"
        self.backend = backend

    def _parent_name(self, ns, parent):
        return self.db.get_snapshot(ns, self.name, parent).name if parent else ""

    def _create(self, ns, key, parent, labels, lease, view):
        bkey = backend_key(ns, key)
        with self.db.transaction():
            ref = SnapshotRef(self.name, key, bkey, parent or "", dict(labels or {}))
            self.db.add_snapshot(ns, ref)
            if lease:
                self.db.add_lease_resource(ns, lease, Resource(key, f"snapshots/{self.name}"))
            bparent = self._parent_name(ns, parent)
            create = self.backend.view if view else self.backend.prepare
            mounts = create(bkey, bparent)
        return mounts

    def prepare(self, ns, key, parent="", labels=None, lease=None):
        return self._create(ns, key, parent, labels, lease, view=False)

    def view(self, ns, key, parent="", labels=None, lease=None):
        return self._create(ns, key, parent, labels, lease, view=True)

    def mounts(self, ns, key):
        return self.backend.mounts(self.db.get_snapshot(ns, self.name, key).name)

    def commit(self, ns, name, key, labels=None, lease=None):
        with self.db.transaction():
            ref = self.db.get_snapshot(ns, self.name, key)
            bname = backend_key(ns, name)
            self.db.delete_snapshot(ns, self.name, key)
            self.db.add_snapshot(ns, SnapshotRef(self.name, name, bname, ref.parent,
                                                 dict(labels if labels is not None else ref.labels)))
            if lease:
                self.db.add_lease_resource(ns, lease, Resource(name, f"snapshots/{self.name}"))
            self.backend.commit(bname, ref.name)

    def stat(self, ns, key):
        ref = self.db.get_snapshot(ns, self.name, key)
        b = self.backend.stat(ref.name)
        return Info(b.kind, key, ref.parent, ref.labels, ref.created_at, ref.updated_at)

    def update(self, ns, info, fieldpaths=None):
        self.db.update_snapshot(ns, self.name, info.name, info.labels, fieldpaths)
        return self.stat(ns, info.name)

    def usage(self, ns, key):
        return self.backend.usage(self.db.get_snapshot(ns, self.name, key).name)

    def remove(self, ns, key):
        """Remove the namespace's snapshot (refused while it has children) and its backend."""
        with self.db.transaction():
            ref = self.db.get_snapshot(ns, self.name, key)
            self.db.delete_snapshot(ns, self.name, key)
            try:
                self.backend.remove(ref.name)
            except NotFound:
                pass

    def list(self, ns, filter=None):
        out = []
        for ref in self.db.list_snapshots(ns, self.name):
            try:
                info = self.stat(ns, ref.key)
            except NotFound:
                continue
            if filter is None or filter(info):
                out.append(info)
        return out

    def walk(self, ns, fn, filter=None):
        for info in self.list(ns, filter):
            fn(info)

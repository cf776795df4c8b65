"""Garbage collection: mark what is referenced, sweep the rest (containerd's model).

Roots, per namespace: images (their target blob), containers (their snapshot, and their
image's target), live leases (every resource they hold), and content or snapshots labelled
`containerd.io/gc.root`. References follow containerd's labels on images, containers, content
and snapshots:

    containerd.io/gc.ref.content[.<anything>]             = <digest>
    containerd.io/gc.ref.snapshot.<snapshotter>[/<any>]   = <key>

and a snapshot references its parent. A blob's labels are those of the namespace's reference
(authoritative) merged over the content store's own labels, so references written on the
bare store (by an unpacker) count too. A lease whose `containerd.io/gc.expire` time (RFC 3339)
has passed is deleted first and protects nothing.

Swept: each namespace's unreferenced content and snapshot references; then every blob that
no namespace references any more (so a blob shared by namespaces lives while any of them
holds it), every backend snapshot no namespace references, and ingests that no live lease
holds and that have not been written for `ingest_grace` seconds. Ingest refs in the content
store are "<namespace>/<ref>"; a lease holds one by its plain ref (type "ingests").

The DB part runs in one write transaction, so writers that add a reference inside a
transaction (NamespacedWriter.commit) never lose a fresh blob to a concurrent pass.
"""

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from corral.content.store import RefLocked
from corral.metadata.errors import FailedPrecondition, NotFound

LABEL_ROOT = "containerd.io/gc.root"
LABEL_EXPIRE = "containerd.io/gc.expire"
_REF_CONTENT = "containerd.io/gc.ref.content"
_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text):
    """RFC 3339 (nanosecond fractions allowed) -> nanoseconds since the epoch, or None."""
    m = _RFC3339.match(text or "")
    if not m:
        return None
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.fromisoformat(m.group(1) + tz).astimezone(timezone.utc)
    frac = (m.group(2) or "").ljust(9, "0")[:9]
    return int(base.timestamp()) * 1_000_000_000 + int(frac)


def label_refs(labels):
    """The ("content", digest) and ("snapshot", snapshotter, key) nodes labels point at."""
    out = []
    for k, v in (labels or {}).items():
        if not v:
            continue
        if k == _REF_CONTENT or k.startswith(_REF_CONTENT + "."):
            out.append(("content", v))
        elif k.startswith(_REF_SNAPSHOT):
            snapshotter = k[len(_REF_SNAPSHOT):].split("/", 1)[0]
            if snapshotter:
                out.append(("snapshot", snapshotter, v))
    return out


@dataclass
class Result:
    content: list = field(default_factory=list)    # (ns, digest) references removed
    blobs: list = field(default_factory=list)      # digests deleted from disk
    snapshots: list = field(default_factory=list)  # (ns, snapshotter, key) removed
    leases: list = field(default_factory=list)     # (ns, id) expired and deleted
    ingests: list = field(default_factory=list)    # backend refs aborted
    seconds: float = 0.0


def collect(db, content_store=None, snapshotters=None, ingest_grace=24 * 3600, orphan_grace=300,
            now=None):
    """One mark-and-sweep pass. `snapshotters` maps names ("overlayfs") to backends.

    What this pass unreferences goes at once. Blobs and backend snapshots that no namespace
    ever referenced are removed only when older than `orphan_grace` seconds: a writer may be
    between committing one and recording its reference."""
    start = time.monotonic()
    now = now if now is not None else time.time_ns()
    snapshotters = snapshotters or {}
    res = Result()
    with db.transaction():
        namespaces = [n.name for n in db.list_namespaces()]
        leased_ingests = set()
        marked = set()  # (ns, "content", digest) / (ns, "snapshot", snapshotter, key)
        swept_snapshots = set()  # (snapshotter, backend name)
        stack = []

        def mark(ns, node):
            key = (ns,) + tuple(node)
            if key not in marked:
                marked.add(key)
                stack.append(key)

        for ns in namespaces:
            for lease in db.list_leases(ns):
                exp = parse_time(lease.labels.get(LABEL_EXPIRE, ""))
                if exp is not None and exp <= now:
                    db.delete_lease(ns, lease.id)
                    res.leases.append((ns, lease.id))
                    continue
                for r in db.list_lease_resources(ns, lease.id):
                    if r.type == "content":
                        mark(ns, ("content", r.id))
                    elif r.type == "ingests":
                        leased_ingests.add(f"{ns}/{r.id}")  # the backend's ref for it
                    elif r.type.startswith("snapshots/"):
                        mark(ns, ("snapshot", r.type[len("snapshots/"):], r.id))
            targets = {}
            for img in db.list_images(ns):
                targets[img.name] = img.target.digest
                mark(ns, ("content", img.target.digest))
                for node in label_refs(img.labels):
                    mark(ns, node)
            for ct in db.list_containers(ns):
                if ct.snapshotter and ct.snapshot_key:
                    mark(ns, ("snapshot", ct.snapshotter, ct.snapshot_key))
                if ct.image in targets:
                    mark(ns, ("content", targets[ct.image]))
                for node in label_refs(ct.labels):
                    mark(ns, node)
            for ref in db.list_content(ns):
                if LABEL_ROOT in ref.labels:
                    mark(ns, ("content", ref.digest))
            for ref in db.list_snapshots(ns):
                if LABEL_ROOT in ref.labels:
                    mark(ns, ("snapshot", ref.snapshotter, ref.key))

        # Follow references from marked content and snapshots.
        while stack:
            ns, kind, *rest = stack.pop()
            try:
                if kind == "content":
                    labels = db.get_content(ns, rest[0]).labels
                    parent = None
                    if content_store is not None:
                        labels = {**_store_labels(content_store, rest[0]), **labels}
                else:
                    ref = db.get_snapshot(ns, rest[0], rest[1])
                    labels, parent = ref.labels, ref.parent
            except NotFound:
                continue
            for node in label_refs(labels):
                mark(ns, node)
            if parent:
                mark(ns, ("snapshot", rest[0], parent))

        # Sweep the namespaces' references.
        for ns in namespaces:
            for ref in db.list_content(ns):
                if (ns, "content", ref.digest) not in marked:
                    db.delete_content(ns, ref.digest)
                    res.content.append((ns, ref.digest))
            doomed = [r for r in db.list_snapshots(ns)
                      if (ns, "snapshot", r.snapshotter, r.key) not in marked]
            for r in _children_first(doomed):
                db.delete_snapshot(ns, r.snapshotter, r.key)
                res.snapshots.append((ns, r.snapshotter, r.key))
                swept_snapshots.add((r.snapshotter, r.name))
        swept_digests = {d for _, d in res.content}
        orphan_before = now - int(orphan_grace * 1_000_000_000)

        # Sweep the backends: what no namespace references any more.
        if content_store is not None:
            for info in content_store.list():
                # A blob never referenced may be between its commit and its reference.
                fresh = info.digest not in swept_digests and info.created_at > orphan_before
                if not fresh and not db.content_namespaces(info.digest):
                    try:
                        content_store.delete(info.digest)
                        res.blobs.append(info.digest)
                    except NotFound:
                        pass
            for st in content_store.list_statuses():
                if st.ref in leased_ingests or now - st.updated_at < ingest_grace * 1_000_000_000:
                    continue
                try:
                    content_store.abort(st.ref)
                    res.ingests.append(st.ref)
                except (RefLocked, NotFound):
                    pass  # a writer holds it (it is in use), or it is gone already
        for name, backend in snapshotters.items():
            live = {r.name for ns in namespaces for r in db.list_snapshots(ns, name)}
            infos = backend.list()
            doomed = [i for i in infos if i.name not in live and
                      ((name, i.name) in swept_snapshots or i.created <= orphan_before)]
            for info in _backend_children_first(doomed):
                try:
                    backend.remove(info.name)
                except (NotFound, FailedPrecondition):
                    pass  # gone already, or a fresh child (within the grace) still uses it
    res.seconds = time.monotonic() - start
    return res


def _store_labels(store, digest):
    try:
        return store.info(digest).labels
    except NotFound:
        return {}


def _children_first(refs):
    """Order snapshot references so every child comes before its parent."""
    by_key = {(r.snapshotter, r.key): r for r in refs}
    depth = {}

    def d(r):
        k = (r.snapshotter, r.key)
        if k not in depth:
            p = by_key.get((r.snapshotter, r.parent)) if r.parent else None
            depth[k] = 0 if p is None else d(p) + 1
        return depth[k]

    return sorted(refs, key=d, reverse=True)


def _backend_children_first(infos):
    by_name = {i.name: i for i in infos}
    depth = {}

    def d(i):
        if i.name not in depth:
            p = by_name.get(i.parent) if i.parent else None
            depth[i.name] = 0 if p is None else d(p) + 1
        return depth[i.name]

    return sorted(infos, key=d, reverse=True)

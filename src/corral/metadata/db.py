"""The metadata database: SQLite in WAL mode, one connection per thread, every change in a
transaction, a schema version with forward migrations.

Everything except the namespaces table is keyed by namespace first, like containerd's bolt
buckets `v1/<namespace>/...`. A namespace comes into being on its first write (as in
containerd) or by create_namespace; deleting one is refused while it holds anything.
"""

import base64
import json
import re
import sqlite3
import threading
import time
from contextlib import contextmanager

from corral.content.store import apply_label_update, parse_digest
from corral.metadata.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from corral.metadata.types import (Any, Container, ContentRef, Descriptor, Image, Lease,
                                   Namespace, Resource, Runtime, SnapshotRef)

# Each migration takes the schema from version i to i + 1 (version 0 is an empty file).
MIGRATIONS = [
    """
    CREATE TABLE namespaces (name TEXT PRIMARY KEY, labels TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE TABLE images (namespace TEXT NOT NULL, name TEXT NOT NULL,
        media_type TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
        annotations TEXT NOT NULL DEFAULT '{}', labels TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, name));
    CREATE TABLE containers (namespace TEXT NOT NULL, id TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}', image TEXT NOT NULL DEFAULT '',
        runtime_name TEXT NOT NULL, runtime_options_type TEXT, runtime_options BLOB,
        spec_type TEXT, spec BLOB, snapshotter TEXT NOT NULL DEFAULT '',
        snapshot_key TEXT NOT NULL DEFAULT '', extensions TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, id));
    CREATE TABLE content (namespace TEXT NOT NULL, digest TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, PRIMARY KEY (namespace, digest));
    CREATE INDEX content_by_digest ON content (digest);
    CREATE TABLE snapshots (namespace TEXT NOT NULL, snapshotter TEXT NOT NULL,
        key TEXT NOT NULL, name TEXT NOT NULL, parent TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL, PRIMARY KEY (namespace, snapshotter, key));
    CREATE TABLE leases (namespace TEXT NOT NULL, id TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}', created_at INTEGER NOT NULL,
        PRIMARY KEY (namespace, id));
    CREATE TABLE lease_resources (namespace TEXT NOT NULL, lease TEXT NOT NULL,
        type TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (namespace, lease, type, id));
    """,
    # v2: containers gained a sandbox ID (containerd 1.7's Container.sandbox).
    "ALTER TABLE containers ADD COLUMN sandbox TEXT NOT NULL DEFAULT '';",
]
SCHEMA_VERSION = len(MIGRATIONS)

_IDENT = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")


def validate_identifier(kind, value):
    """containerd's identifier rule for namespaces, container and lease IDs."""
    if not value or len(value) > 76 or not _IDENT.match(value):
        raise InvalidArgument(f"invalid {kind} {value!r}: use letters, digits and single "
                              "'.', '_' or '-' between them, at most 76 characters")


def _j(d):
    return json.dumps(d or {}, sort_keys=True)


def _now():
    return time.time_ns()


def connect(path, timeout=30):
    """A connection in WAL mode with synchronous=NORMAL (consistent after a crash).

    SQLite answers "database is locked" to the journal-mode switch at once, without its busy
    handler, while another process is creating or switching the same file; so retry it."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.01)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def migrate(conn, target=SCHEMA_VERSION, migrations=MIGRATIONS, what="metadata database"):
    """Bring a database up to `target` (len(migrations) for another database's list), one
    migration per transaction."""
    latest = len(migrations)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version > latest:
        raise FailedPrecondition(f"{what} schema {version} is newer than this corral's "
                                 f"{latest}; upgrade corral")
    while version < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("SELECT version FROM schema_version").fetchone()[0]
            if version < target:
                for stmt in migrations[version].split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                version += 1
                conn.execute("UPDATE schema_version SET version = ?", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version


class MetadataDB:
    def __init__(self, path):
        self.path = path
        self._local = threading.local()
        migrate(self._conn())

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            self._local.depth = 0
        return conn

    def close(self):
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def schema_version(self):
        return self._conn().execute("SELECT version FROM schema_version").fetchone()[0]

    @contextmanager
    def transaction(self):
        """One write transaction; nested uses join the outer one. Any exception rolls back."""
        conn = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self._local.depth = 0

    def _read(self, sql, args=()):
        return self._conn().execute(sql, args).fetchall()

    def _ensure_namespace(self, conn, ns):
        validate_identifier("namespace", ns)
        now = _now()
        conn.execute("INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) "
                      "VALUES (?, '{}', ?, ?)", (ns, now, now))

    # -- namespaces

    def create_namespace(self, name, labels=None):
        validate_identifier("namespace", name)
        now = _now()
        with self.transaction() as c:
            try:
                c.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) "
                          "VALUES (?, ?, ?, ?)", (name, _j(labels), now, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"namespace {name}: already exists") from None
        return self.get_namespace(name)

    def get_namespace(self, name):
        rows = self._read("SELECT name, labels, created_at, updated_at FROM namespaces "
                          "WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"namespace {name}: not found")
        n, labels, c, u = rows[0]
        return Namespace(n, json.loads(labels), c, u)

    def list_namespaces(self):
        return [Namespace(n, json.loads(lb), c, u) for n, lb, c, u in
                self._read("SELECT name, labels, created_at, updated_at FROM namespaces ORDER BY name")]

    def update_namespace(self, name, labels, fieldpaths=None):
        with self.transaction() as c:
            ns = self.get_namespace(name)
            new = apply_label_update(ns.labels, labels, fieldpaths)
            c.execute("UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?",
                      (_j(new), _now(), name))
        return self.get_namespace(name)

    def delete_namespace(self, name):
        with self.transaction() as c:
            self.get_namespace(name)
            held = [t for t in ("images", "containers", "content", "snapshots", "leases")
                    if c.execute(f"SELECT 1 FROM {t} WHERE namespace = ? LIMIT 1", (name,)).fetchone()]
            if held:
                raise FailedPrecondition(f"namespace {name}: must be empty to be deleted, but it "
                                         f"still has {', '.join(held)}")
            c.execute("DELETE FROM namespaces WHERE name = ?", (name,))

    # -- images

    _IMAGE_COLS = "name, media_type, digest, size, annotations, labels, created_at, updated_at"

    @staticmethod
    def _image(row):
        name, mt, dg, size, ann, labels, c, u = row
        return Image(name, Descriptor(mt, dg, size, json.loads(ann)), json.loads(labels), c, u)

    @staticmethod
    def _check_image(image):
        if not image.name:
            raise InvalidArgument("image name must not be empty")
        t = image.target
        if t is None or not t.media_type:
            raise InvalidArgument(f"image {image.name}: target needs a media type")
        parse_digest(t.digest)

    def create_image(self, ns, image):
        self._check_image(image)
        now = _now()
        with self.transaction() as c:
            self._ensure_namespace(c, ns)
            t = image.target
            try:
                c.execute(f"INSERT INTO images (namespace, {self._IMAGE_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                          (ns, image.name, t.media_type, t.digest, t.size, _j(t.annotations),
                           _j(image.labels), now, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"image {image.name}: already exists in namespace {ns}") from None
        return self.get_image(ns, image.name)

    def get_image(self, ns, name):
        rows = self._read(f"SELECT {self._IMAGE_COLS} FROM images WHERE namespace = ? AND name = ?",
                          (ns, name))
        if not rows:
            raise NotFound(f"image {name}: not found in namespace {ns}")
        return self._image(rows[0])

    def list_images(self, ns, filter=None):
        imgs = [self._image(r) for r in self._read(
            f"SELECT {self._IMAGE_COLS} FROM images WHERE namespace = ? ORDER BY name", (ns,))]
        return [i for i in imgs if filter is None or filter(i)]

    def update_image(self, ns, image, fieldpaths=None):
        """Fieldpaths: labels, labels.<k>, annotations, annotations.<k>, target; none = all."""
        with self.transaction() as c:
            cur = self.get_image(ns, image.name)
            if not fieldpaths:
                self._check_image(image)
                cur.labels, cur.target = dict(image.labels), image.target
            for fp in fieldpaths or ():
                if fp == "labels" or fp.startswith("labels."):
                    cur.labels = apply_label_update(cur.labels, image.labels, [fp])
                elif fp == "annotations" or fp.startswith("annotations."):
                    key = fp[len("annotations."):] if "." in fp else None
                    src = image.target.annotations if image.target else {}
                    cur.target.annotations = apply_label_update(
                        cur.target.annotations, src, [f"labels.{key}" if key else "labels"])
                elif fp == "target":
                    self._check_image(image)
                    cur.target = image.target
                else:
                    raise InvalidArgument(f"image {image.name}: cannot update field {fp!r}")
            t = cur.target
            c.execute("UPDATE images SET media_type=?, digest=?, size=?, annotations=?, labels=?, "
                      "updated_at=? WHERE namespace=? AND name=?",
                      (t.media_type, t.digest, t.size, _j(t.annotations), _j(cur.labels), _now(),
                       ns, image.name))
        return self.get_image(ns, image.name)

    def delete_image(self, ns, name):
        with self.transaction() as c:
            if c.execute("DELETE FROM images WHERE namespace=? AND name=?", (ns, name)).rowcount == 0:
                raise NotFound(f"image {name}: not found in namespace {ns}")

    # -- containers

    _CONTAINER_COLS = ("id, labels, image, runtime_name, runtime_options_type, runtime_options, "
                       "spec_type, spec, snapshotter, snapshot_key, extensions, sandbox, "
                       "created_at, updated_at")

    @staticmethod
    def _container(row):
        (cid, labels, image, rname, rot, ro, st, spec, snapshotter, skey, ext, sandbox, c, u) = row
        exts = {k: Any(v[0], base64.b64decode(v[1])) for k, v in json.loads(ext).items()}
        return Container(id=cid, labels=json.loads(labels), image=image,
                         runtime=Runtime(rname, Any(rot, bytes(ro)) if rot is not None else None),
                         spec=Any(st, bytes(spec)) if st is not None else None,
                         snapshotter=snapshotter, snapshot_key=skey, extensions=exts,
                         sandbox=sandbox, created_at=c, updated_at=u)

    @staticmethod
    def _container_values(ct):
        ro = ct.runtime.options
        ext = {k: [v.type_url, base64.b64encode(v.value).decode()] for k, v in ct.extensions.items()}
        return (_j(ct.labels), ct.image, ct.runtime.name,
                ro.type_url if ro else None, ro.value if ro else None,
                ct.spec.type_url if ct.spec else None, ct.spec.value if ct.spec else None,
                ct.snapshotter, ct.snapshot_key, json.dumps(ext, sort_keys=True), ct.sandbox)

    def create_container(self, ns, ct):
        validate_identifier("container id", ct.id)
        if ct.runtime is None or not ct.runtime.name:
            raise InvalidArgument(f"container {ct.id}: a runtime name is required")
        if ct.snapshot_key and not ct.snapshotter:
            raise InvalidArgument(f"container {ct.id}: a snapshot key needs a snapshotter")
        now = _now()
        with self.transaction() as c:
            self._ensure_namespace(c, ns)
            try:
                c.execute(f"INSERT INTO containers (namespace, {self._CONTAINER_COLS}) "
                          "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                          (ns, ct.id) + self._container_values(ct) + (now, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"container {ct.id}: already exists in namespace {ns}") from None
        return self.get_container(ns, ct.id)

    def get_container(self, ns, cid):
        rows = self._read(f"SELECT {self._CONTAINER_COLS} FROM containers WHERE namespace=? AND id=?",
                          (ns, cid))
        if not rows:
            raise NotFound(f"container {cid}: not found in namespace {ns}")
        return self._container(rows[0])

    def list_containers(self, ns, filter=None):
        cts = [self._container(r) for r in self._read(
            f"SELECT {self._CONTAINER_COLS} FROM containers WHERE namespace=? ORDER BY id", (ns,))]
        return [x for x in cts if filter is None or filter(x)]

    def update_container(self, ns, ct, fieldpaths=None):
        """Fieldpaths: labels, labels.<k>, spec, extensions, extensions.<k>, image,
        snapshotkey, sandbox; none = all of them. runtime and snapshotter are immutable."""
        with self.transaction() as c:
            cur = self.get_container(ns, ct.id)
            if not fieldpaths:
                if ct.runtime is not None and ct.runtime.name and ct.runtime.name != cur.runtime.name:
                    raise InvalidArgument(f"container {ct.id}: runtime is immutable")
                if ct.snapshotter and ct.snapshotter != cur.snapshotter:
                    raise InvalidArgument(f"container {ct.id}: snapshotter is immutable")
                fieldpaths = ["labels", "spec", "extensions", "image", "snapshotkey", "sandbox"]
            for fp in fieldpaths:
                if fp == "labels" or fp.startswith("labels."):
                    cur.labels = apply_label_update(cur.labels, ct.labels, [fp])
                elif fp == "extensions":
                    cur.extensions = dict(ct.extensions)
                elif fp.startswith("extensions."):
                    key = fp[len("extensions."):]
                    if key in ct.extensions:
                        cur.extensions[key] = ct.extensions[key]
                    else:
                        cur.extensions.pop(key, None)
                elif fp == "spec":
                    cur.spec = ct.spec
                elif fp == "image":
                    cur.image = ct.image
                elif fp == "snapshotkey":
                    cur.snapshot_key = ct.snapshot_key
                elif fp == "sandbox":
                    cur.sandbox = ct.sandbox
                elif fp in ("runtime", "snapshotter"):
                    raise InvalidArgument(f"container {ct.id}: {fp} is immutable")
                else:
                    raise InvalidArgument(f"container {ct.id}: cannot update field {fp!r}")
            c.execute("UPDATE containers SET labels=?, image=?, runtime_name=?, runtime_options_type=?, "
                      "runtime_options=?, spec_type=?, spec=?, snapshotter=?, snapshot_key=?, "
                      "extensions=?, sandbox=?, updated_at=? WHERE namespace=? AND id=?",
                      self._container_values(cur) + (_now(), ns, ct.id))
        return self.get_container(ns, ct.id)

    def delete_container(self, ns, cid):
        with self.transaction() as c:
            if c.execute("DELETE FROM containers WHERE namespace=? AND id=?", (ns, cid)).rowcount == 0:
                raise NotFound(f"container {cid}: not found in namespace {ns}")

    # -- content references

    def add_content(self, ns, digest, labels=None, exist_ok=False):
        """Record that namespace `ns` holds blob `digest`."""
        parse_digest(digest)
        now = _now()
        with self.transaction() as c:
            self._ensure_namespace(c, ns)
            try:
                c.execute("INSERT INTO content (namespace, digest, labels, created_at, updated_at) "
                          "VALUES (?,?,?,?,?)", (ns, digest, _j(labels), now, now))
            except sqlite3.IntegrityError:
                if not exist_ok:
                    raise AlreadyExists(f"content {digest}: already exists in namespace {ns}") from None
        return self.get_content(ns, digest)

    def get_content(self, ns, digest):
        rows = self._read("SELECT digest, labels, created_at, updated_at FROM content "
                          "WHERE namespace=? AND digest=?", (ns, digest))
        if not rows:
            raise NotFound(f"content {digest}: not found in namespace {ns}")
        d, lb, c, u = rows[0]
        return ContentRef(d, json.loads(lb), c, u)

    def list_content(self, ns, filter=None):
        refs = [ContentRef(d, json.loads(lb), c, u) for d, lb, c, u in self._read(
            "SELECT digest, labels, created_at, updated_at FROM content WHERE namespace=? "
            "ORDER BY digest", (ns,))]
        return [r for r in refs if filter is None or filter(r)]

    def update_content(self, ns, digest, labels, fieldpaths=None):
        with self.transaction() as c:
            cur = self.get_content(ns, digest)
            new = apply_label_update(cur.labels, labels, fieldpaths)
            c.execute("UPDATE content SET labels=?, updated_at=? WHERE namespace=? AND digest=?",
                      (_j(new), _now(), ns, digest))
        return self.get_content(ns, digest)

    def delete_content(self, ns, digest):
        with self.transaction() as c:
            if c.execute("DELETE FROM content WHERE namespace=? AND digest=?", (ns, digest)).rowcount == 0:
                raise NotFound(f"content {digest}: not found in namespace {ns}")

    def content_namespaces(self, digest):
        """The namespaces that hold a reference to `digest`."""
        return [r[0] for r in self._read("SELECT namespace FROM content WHERE digest=? ORDER BY namespace",
                                         (digest,))]

    # -- snapshot references

    _SNAP_COLS = "snapshotter, key, name, parent, labels, created_at, updated_at"

    @staticmethod
    def _snap(row):
        sn, key, name, parent, lb, c, u = row
        return SnapshotRef(sn, key, name, parent, json.loads(lb), c, u)

    def add_snapshot(self, ns, ref):
        if not ref.snapshotter or not ref.key or not ref.name:
            raise InvalidArgument("a snapshot reference needs a snapshotter, a key and a backend name")
        now = _now()
        with self.transaction() as c:
            self._ensure_namespace(c, ns)
            if ref.parent:
                self.get_snapshot(ns, ref.snapshotter, ref.parent)
            try:
                c.execute(f"INSERT INTO snapshots (namespace, {self._SNAP_COLS}) VALUES (?,?,?,?,?,?,?,?)",
                          (ns, ref.snapshotter, ref.key, ref.name, ref.parent, _j(ref.labels), now, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"snapshot {ref.key}: already exists in namespace {ns} "
                                    f"({ref.snapshotter})") from None
        return self.get_snapshot(ns, ref.snapshotter, ref.key)

    def get_snapshot(self, ns, snapshotter, key):
        rows = self._read(f"SELECT {self._SNAP_COLS} FROM snapshots WHERE namespace=? AND "
                          "snapshotter=? AND key=?", (ns, snapshotter, key))
        if not rows:
            raise NotFound(f"snapshot {key}: not found in namespace {ns} ({snapshotter})")
        return self._snap(rows[0])

    def list_snapshots(self, ns, snapshotter=None):
        if snapshotter is None:
            rows = self._read(f"SELECT {self._SNAP_COLS} FROM snapshots WHERE namespace=? "
                              "ORDER BY snapshotter, key", (ns,))
        else:
            rows = self._read(f"SELECT {self._SNAP_COLS} FROM snapshots WHERE namespace=? AND "
                              "snapshotter=? ORDER BY key", (ns, snapshotter))
        return [self._snap(r) for r in rows]

    def update_snapshot(self, ns, snapshotter, key, labels, fieldpaths=None):
        with self.transaction() as c:
            cur = self.get_snapshot(ns, snapshotter, key)
            new = apply_label_update(cur.labels, labels, fieldpaths)
            c.execute("UPDATE snapshots SET labels=?, updated_at=? WHERE namespace=? AND "
                      "snapshotter=? AND key=?", (_j(new), _now(), ns, snapshotter, key))
        return self.get_snapshot(ns, snapshotter, key)

    def delete_snapshot(self, ns, snapshotter, key):
        """Remove a reference; refused while another snapshot of the namespace has it as parent."""
        with self.transaction() as c:
            self.get_snapshot(ns, snapshotter, key)
            if c.execute("SELECT 1 FROM snapshots WHERE namespace=? AND snapshotter=? AND parent=? "
                         "LIMIT 1", (ns, snapshotter, key)).fetchone():
                raise FailedPrecondition(f"snapshot {key}: has children in namespace {ns}; "
                                         "remove them first")
            c.execute("DELETE FROM snapshots WHERE namespace=? AND snapshotter=? AND key=?",
                      (ns, snapshotter, key))

    # -- leases

    def create_lease(self, ns, lease_id, labels=None):
        # containerd does not restrict lease ids (ctr makes them as "<nanos>-<base64url>")
        if not lease_id or len(lease_id) > 255 or "/" in lease_id:
            raise InvalidArgument(f"invalid lease id {lease_id!r}: must be 1-255 characters without '/'")
        with self.transaction() as c:
            self._ensure_namespace(c, ns)
            try:
                c.execute("INSERT INTO leases (namespace, id, labels, created_at) VALUES (?,?,?,?)",
                          (ns, lease_id, _j(labels), _now()))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"lease {lease_id}: already exists in namespace {ns}") from None
        return self.get_lease(ns, lease_id)

    def get_lease(self, ns, lease_id):
        rows = self._read("SELECT id, labels, created_at FROM leases WHERE namespace=? AND id=?",
                          (ns, lease_id))
        if not rows:
            raise NotFound(f"lease {lease_id}: not found in namespace {ns}")
        i, lb, c = rows[0]
        return Lease(i, json.loads(lb), c)

    def list_leases(self, ns, filter=None):
        ls = [Lease(i, json.loads(lb), c) for i, lb, c in self._read(
            "SELECT id, labels, created_at FROM leases WHERE namespace=? ORDER BY id", (ns,))]
        return [x for x in ls if filter is None or filter(x)]

    def delete_lease(self, ns, lease_id):
        with self.transaction() as c:
            if c.execute("DELETE FROM leases WHERE namespace=? AND id=?", (ns, lease_id)).rowcount == 0:
                raise NotFound(f"lease {lease_id}: not found in namespace {ns}")
            c.execute("DELETE FROM lease_resources WHERE namespace=? AND lease=?", (ns, lease_id))

    @staticmethod
    def _check_resource(r):
        if r.type == "content":
            parse_digest(r.id)
        elif r.type == "ingests" or (r.type.startswith("snapshots/") and len(r.type) > len("snapshots/")):
            if not r.id:
                raise InvalidArgument(f"lease resource of type {r.type} needs an id")
        else:
            raise InvalidArgument(f"unsupported lease resource type {r.type!r}: use content, "
                                  "ingests or snapshots/<snapshotter>")

    def add_lease_resource(self, ns, lease_id, resource):
        self._check_resource(resource)
        with self.transaction() as c:
            self.get_lease(ns, lease_id)
            c.execute("INSERT OR IGNORE INTO lease_resources (namespace, lease, type, id) VALUES (?,?,?,?)",
                      (ns, lease_id, resource.type, resource.id))

    def delete_lease_resource(self, ns, lease_id, resource):
        with self.transaction() as c:
            self.get_lease(ns, lease_id)
            c.execute("DELETE FROM lease_resources WHERE namespace=? AND lease=? AND type=? AND id=?",
                      (ns, lease_id, resource.type, resource.id))

    def list_lease_resources(self, ns, lease_id):
        self.get_lease(ns, lease_id)
        return [Resource(i, t) for t, i in self._read(
            "SELECT type, id FROM lease_resources WHERE namespace=? AND lease=? ORDER BY type, id",
            (ns, lease_id))]

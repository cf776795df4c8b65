"""What the snapshotters share: containerd's snapshot model (kinds, info, usage, mount specs),
the snapshotter's own SQLite metadata, and the prepare/view/commit/remove logic.

A snapshotter keeps, under its root:

    metadata.db          one row per snapshot: numeric id, key (the name once committed),
                         kind, parent key, labels, times, usage of committed snapshots
    snapshots/<id>/      the snapshot's directories (layout per snapshotter)

Every change goes through one SQLite transaction, and directories are made under a temporary
name and renamed into place before that transaction commits, so a failure leaves neither a
row without a directory nor a directory that the database will ever reuse.
"""

import enum
import json
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field

from corral.content.store import apply_label_update
from corral.metadata.errors import (AlreadyExists, FailedPrecondition, InvalidArgument,
                                    NotFound)


# The snapshotter database's schema, as the metadata DB keeps its own: migration i takes it
# from version i to i + 1. The first one is IF NOT EXISTS so databases made before versions
# existed step up to 1 as they are.
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS snapshots (id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE, kind INTEGER NOT NULL, parent TEXT NOT NULL DEFAULT '',
        labels TEXT NOT NULL DEFAULT '{}', created INTEGER NOT NULL, updated INTEGER NOT NULL,
        size INTEGER NOT NULL DEFAULT 0, inodes INTEGER NOT NULL DEFAULT 0)
    """,
]


class Kind(enum.IntEnum):
    """containerd's snapshot kinds, with its numeric values."""
    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


@dataclass
class Info:
    kind: Kind
    name: str
    parent: str = ""
    labels: dict = field(default_factory=dict)
    created: int = 0  # nanoseconds since the epoch
    updated: int = 0


@dataclass
class Usage:
    size: int = 0  # bytes of disk used (blocks x 512), as containerd reports
    inodes: int = 0


@dataclass
class Mount:
    type: str
    source: str
    options: list = field(default_factory=list)

    def to_dict(self):
        return {"type": self.type, "source": self.source, "options": list(self.options)}


def disk_usage(path):
    """Blocks and distinct inodes under `path` (the root included, hardlinks counted once)."""
    seen = set()
    usage = Usage()
    stack = [path]
    first = True
    while stack:
        p = stack.pop()
        if first:
            st = os.lstat(p)
            first = False
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                usage.size += st.st_blocks * 512
        with os.scandir(p) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    usage.size += st.st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
    usage.inodes = len(seen)
    return usage


FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def spread_subdirs(path):
    """Mark `path` as the top of directory hierarchies (chattr +T): ext4's Orlov allocator then
    puts each subdirectory (a snapshot, a staged layer) in a block group chosen for it rather
    than in its parent's, so a new layer's files do not crowd into the group where the last
    removed ones were (on ext4 without a journal every new inode is checked against the
    recently deleted ones of its group, which made a layer's creates cost more than its data
    writes). A hint: filesystems without the flag, and any error, leave things as they are."""
    import fcntl
    import struct
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0]
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_TOPDIR_FL))
    except OSError:
        pass
    finally:
        os.close(fd)


class Snapshotter:
    """Base class. Subclasses give the directory layout and the mounts:
    _make_dirs(path, kind, parent_ids), _mounts(id, kind, parent_ids), _fs(id)."""

    name = "base"

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self._snapshots = os.path.join(self.root, "snapshots")
        os.makedirs(self._snapshots, exist_ok=True)
        spread_subdirs(self._snapshots)     # each snapshot is a hierarchy of its own
        self._lock = threading.RLock()
        from corral.metadata.db import connect, migrate
        self._db = connect(os.path.join(self.root, "metadata.db"))
        migrate(self._db, len(MIGRATIONS), MIGRATIONS, f"{self.name} snapshotter database")

    def schema_version(self):
        with self._lock:
            return self._db.execute("SELECT version FROM schema_version").fetchone()[0]

    def close(self):
        with self._lock:
            self._db.close()

    # -- database helpers (called with self._lock held)

    def _begin(self):
        self._db.execute("BEGIN IMMEDIATE")

    def _row(self, key):
        row = self._db.execute("SELECT id, kind, parent, labels, created, updated, size, inodes "
                               "FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key}: not found ({self.name} snapshotter)")
        return row

    def _parent_ids(self, parent):
        """IDs of `parent` and its ancestors, nearest first (one recursive query)."""
        if not parent:
            return []
        rows = self._db.execute(
            "WITH RECURSIVE chain(id, parent, depth) AS ("
            " SELECT id, parent, 0 FROM snapshots WHERE key = ?"
            " UNION ALL SELECT s.id, s.parent, c.depth + 1 FROM snapshots s"
            " JOIN chain c ON s.key = c.parent WHERE c.parent != '')"
            " SELECT id FROM chain ORDER BY depth", (parent,)).fetchall()
        if not rows:
            raise NotFound(f"snapshot {parent}: not found ({self.name} snapshotter)")
        return [r[0] for r in rows]

    def _info(self, key, row):
        _, kind, parent, labels, created, updated, *_ = row
        return Info(Kind(kind), key, parent, json.loads(labels), created, updated)

    def _dir(self, sid):
        return os.path.join(self._snapshots, str(sid))

    # -- the snapshotter API

    def stat(self, key):
        with self._lock:
            return self._info(key, self._row(key))

    def update(self, info, fieldpaths=None):
        """Only labels can change (fieldpaths: labels, labels.<key>; none = all labels)."""
        with self._lock:
            self._begin()
            try:
                row = self._row(info.name)
                new = apply_label_update(json.loads(row[3]), info.labels, fieldpaths)
                self._db.execute("UPDATE snapshots SET labels = ?, updated = ? WHERE key = ?",
                                 (json.dumps(new, sort_keys=True), time.time_ns(), info.name))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._info(info.name, self._row(info.name))

    def usage(self, key):
        with self._lock:
            sid, kind, _, _, _, _, size, inodes = self._row(key)
        if kind != Kind.ACTIVE:
            return Usage(size, inodes)  # measured at commit; views use nothing of their own
        return disk_usage(self._fs(sid))

    def mounts(self, key):
        with self._lock:
            sid, kind, parent, *_ = self._row(key)
            if kind == Kind.COMMITTED:
                raise FailedPrecondition(f"snapshot {key}: is committed; mounts exist only for "
                                         "active snapshots and views (prepare or view it)")
            return self._mounts(sid, Kind(kind), self._parent_ids(parent))

    def prepare(self, key, parent="", labels=None):
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key, parent="", labels=None):
        return self._create(Kind.VIEW, key, parent, labels)

    def _create(self, kind, key, parent, labels):
        if not key:
            raise InvalidArgument("a snapshot needs a non-empty key")
        with self._lock:
            self._begin()
            tmp = None
            try:
                if self._db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                    raise AlreadyExists(f"snapshot {key}: already exists ({self.name} snapshotter)")
                parent_ids = []
                if parent:
                    prow = self._row(parent)
                    if prow[1] != Kind.COMMITTED:
                        raise InvalidArgument(f"snapshot {key}: parent {parent} is not committed; "
                                              "commit it first")
                    parent_ids = self._parent_ids(parent)
                now = time.time_ns()
                cur = self._db.execute("INSERT INTO snapshots (key, kind, parent, labels, created, "
                                       "updated) VALUES (?, ?, ?, ?, ?, ?)",
                                       (key, int(kind), parent or "", json.dumps(labels or {}, sort_keys=True),
                                        now, now))
                sid = cur.lastrowid
                tmp = os.path.join(self._snapshots, f"new-{uuid.uuid4().hex[:12]}")
                os.mkdir(tmp, 0o700)
                self._make_dirs(tmp, kind, parent_ids)
                final = self._dir(sid)
                if os.path.lexists(final):
                    # Left by a crash after a rename whose transaction never committed: the
                    # database (we hold its write lock) says this id is free.
                    shutil.rmtree(final)
                os.rename(tmp, final)
                tmp = final
                mounts = self._mounts(sid, kind, parent_ids)
                self._db.execute("COMMIT")
                return mounts
            except BaseException:
                self._db.execute("ROLLBACK")
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise

    def commit(self, name, key, labels=None):
        """Turn active snapshot `key` into committed snapshot `name` (same directories)."""
        if not name:
            raise InvalidArgument("a committed snapshot needs a non-empty name")
        with self._lock:
            self._begin()
            try:
                sid, kind, parent, old_labels, *_ = self._row(key)
                if kind != Kind.ACTIVE:
                    raise FailedPrecondition(f"snapshot {key}: is not active and cannot be committed")
                if self._db.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                    raise AlreadyExists(f"snapshot {name}: already exists ({self.name} snapshotter)")
                use = disk_usage(self._fs(sid))
                self._db.execute("UPDATE snapshots SET key = ?, kind = ?, labels = ?, updated = ?, "
                                 "size = ?, inodes = ? WHERE id = ?",
                                 (name, int(Kind.COMMITTED),
                                  json.dumps(labels if labels is not None else json.loads(old_labels),
                                             sort_keys=True),
                                  time.time_ns(), use.size, use.inodes, sid))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def remove(self, key):
        """Remove a snapshot; refused (FailedPrecondition) while it has children."""
        with self._lock:
            self._begin()
            trash = None
            try:
                sid = self._row(key)[0]
                child = self._db.execute("SELECT key FROM snapshots WHERE parent = ? LIMIT 1",
                                         (key,)).fetchone()
                if child:
                    raise FailedPrecondition(f"snapshot {key}: cannot remove, snapshot {child[0]} "
                                             "is its child; remove the children first")
                self._db.execute("DELETE FROM snapshots WHERE id = ?", (sid,))
                trash = os.path.join(self._snapshots, f"rm-{sid}")
                os.rename(self._dir(sid), trash)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                if trash is not None and os.path.exists(trash):
                    os.rename(trash, self._dir(sid))
                raise
        shutil.rmtree(trash, ignore_errors=True)

    def walk(self, fn, filter=None):
        """Call fn(info) for each snapshot (that `filter(info)` accepts)."""
        for info in self.list(filter):
            fn(info)

    def list(self, filter=None):
        with self._lock:
            rows = self._db.execute("SELECT key, id, kind, parent, labels, created, updated, size, "
                                    "inodes FROM snapshots ORDER BY id").fetchall()
        infos = [self._info(r[0], r[1:]) for r in rows]
        return [i for i in infos if filter is None or filter(i)]

    def cleanup(self):
        """Delete directories no snapshot owns (left by a crash between steps)."""
        with self._lock:
            ids = {str(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}
            for name in os.listdir(self._snapshots):
                if name not in ids:
                    shutil.rmtree(os.path.join(self._snapshots, name), ignore_errors=True)

"""The local content store: content-addressed blobs with resumable, verified ingests.

On-disk layout (containerd's local store, plus a labels folder for the store's own use):

    <root>/blobs/<alg>/<hex>       committed blobs, read-only, never changed in place
    <root>/labels/<alg>/<hex>      labels of a blob as JSON (the metadata DB is authoritative
                                   per namespace; these serve users of the bare store)
    <root>/ingest/<sha256(ref)>/   one in-progress write: data, ref, total, expected,
                                   startedat, updatedat, lock

A writer holds an exclusive flock on its ingest's lock file, so a second writer of the same
ref (thread or process) is refused with RefLocked. Commit verifies size and digest, then
hard-links the data to its blob path: link() fails when the blob exists, so of two writers of
the same blob exactly one commits and the other gets AlreadyExists (which callers treat as
success).
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field

from corral.metadata.errors import (AlreadyExists, FailedPrecondition, InvalidArgument,
                                    NotFound, Unavailable)


class DigestMismatch(FailedPrecondition):
    """The written bytes do not hash to the expected digest (nothing was committed)."""


class SizeMismatch(FailedPrecondition):
    """The written size differs from the expected size (nothing was committed)."""


class RefLocked(Unavailable):
    """Another writer holds the ref."""


ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+):([a-f0-9]+)$")
_CHUNK = 1 << 20


def parse_digest(digest):
    """'sha256:<hex>' -> ('sha256', '<hex>'); InvalidArgument for anything else."""
    m = _DIGEST_RE.match(digest or "")
    if not m or ALGORITHMS.get(m.group(1)) != len(m.group(2)):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex> or sha512:<128 hex>")
    return m.group(1), m.group(2)


def _hash_file(path, alg, limit=None):
    h = hashlib.new(alg)
    with open(path, "rb") as f:
        remaining = limit
        while remaining is None or remaining > 0:
            chunk = f.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return h


def _read_text(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return default


def _write_atomic(path, data):
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def apply_label_update(current, labels, fieldpaths):
    """containerd's label update rule: no fieldpaths or 'labels' replaces all labels;
    'labels.<key>' sets that key (or deletes it when absent or empty in `labels`)."""
    labels = dict(labels or {})
    if not fieldpaths:
        return labels
    result = dict(current or {})
    for fp in fieldpaths:
        if fp == "labels":
            result = dict(labels)
        elif fp.startswith("labels."):
            key = fp[len("labels."):]
            if labels.get(key):
                result[key] = labels[key]
            else:
                result.pop(key, None)
        else:
            raise InvalidArgument(f"cannot update field {fp!r}: only labels and labels.<key> are updatable")
    return result


@dataclass
class Info:
    digest: str
    size: int
    created_at: int  # nanoseconds since the epoch
    updated_at: int
    labels: dict = field(default_factory=dict)


@dataclass
class Status:
    ref: str
    offset: int
    total: int  # 0 when unknown
    expected: str  # "" when unknown
    started_at: int
    updated_at: int


class ReaderAt:
    """Random access to one blob: read_at(size, offset), .size, close()."""

    def __init__(self, path):
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self._fd).st_size

    def read_at(self, size, offset):
        return os.pread(self._fd, size, offset)

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ContentStore:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        for sub in ("blobs", "ingest", "labels"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)

    # -- paths

    def path(self, digest):
        """Path of a committed blob (it may not exist)."""
        alg, hexd = parse_digest(digest)
        return os.path.join(self.root, "blobs", alg, hexd)

    def _labels_path(self, digest):
        alg, hexd = parse_digest(digest)
        return os.path.join(self.root, "labels", alg, hexd)

    def _ingest_dir(self, ref):
        if not ref:
            raise InvalidArgument("content ingest needs a non-empty ref")
        return os.path.join(self.root, "ingest", hashlib.sha256(ref.encode()).hexdigest())

    # -- blobs

    def info(self, digest):
        path = self.path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        labels, updated = {}, st.st_mtime_ns
        lp = self._labels_path(digest)
        try:
            lst = os.stat(lp)
            labels = json.loads(_read_text(lp, "{}"))
            updated = max(updated, lst.st_mtime_ns)
        except (FileNotFoundError, ValueError):
            pass
        return Info(digest=digest, size=st.st_size, created_at=st.st_mtime_ns,
                    updated_at=updated, labels=labels)

    def exists(self, digest):
        return os.path.exists(self.path(digest))

    def update(self, digest, labels, fieldpaths=None):
        info = self.info(digest)
        new = apply_label_update(info.labels, labels, fieldpaths)
        self._write_labels(digest, new)
        return self.info(digest)

    def _write_labels(self, digest, labels):
        lp = self._labels_path(digest)
        if not labels:
            try:
                os.unlink(lp)
            except FileNotFoundError:
                pass
            return
        os.makedirs(os.path.dirname(lp), exist_ok=True)
        _write_atomic(lp, json.dumps(labels, sort_keys=True))

    def walk(self, fn, filter=None):
        """Call fn(info) for every committed blob (that `filter(info)` accepts)."""
        blobs = os.path.join(self.root, "blobs")
        for alg in sorted(os.listdir(blobs)):
            if alg not in ALGORITHMS:
                continue
            for hexd in sorted(os.listdir(os.path.join(blobs, alg))):
                try:
                    info = self.info(f"{alg}:{hexd}")
                except (NotFound, InvalidArgument):
                    continue  # deleted meanwhile, or a stray file
                if filter is None or filter(info):
                    fn(info)

    def list(self, filter=None):
        out = []
        self.walk(out.append, filter)
        return out

    def delete(self, digest):
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None
        try:
            os.unlink(self._labels_path(digest))
        except FileNotFoundError:
            pass

    def open(self, digest):
        """A binary file object reading the blob."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    def reader_at(self, digest):
        try:
            return ReaderAt(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found") from None

    # -- ingests

    def writer(self, ref, total=None, expected=None):
        """A Writer for `ref`, resuming a partial ingest of the same ref if there is one.

        AlreadyExists when `expected` is already committed; RefLocked when another writer
        holds the ref."""
        if expected:
            parse_digest(expected)
            if self.exists(expected):
                raise AlreadyExists(f"content {expected}: already exists")
        d, lock_fd = self._lock(ref)
        try:
            return Writer(self, ref, d, lock_fd, total or 0, expected or "")
        except BaseException:
            if not os.path.exists(os.path.join(d, "data")):
                self._remove_ingest(d)  # a new ingest that never started: leave nothing
            os.close(lock_fd)
            raise

    def _lock(self, ref):
        d = self._ingest_dir(ref)
        lock_path = os.path.join(d, "lock")
        for _ in range(100):
            os.makedirs(d, exist_ok=True)
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # the ingest was removed between makedirs and open
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RefLocked(f"content ingest {ref!r}: ref locked by another writer; "
                                "retry when it finishes") from None
            # The lock file we hold must still be the live one (not one of a removed ingest).
            try:
                live = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                live = False
            if live:
                return d, fd
            os.close(fd)
        raise Unavailable(f"content ingest {ref!r}: could not lock the ref; retry")

    def _remove_ingest(self, d):
        """Remove an ingest dir (its lock is held by the caller): rename first, so it is gone
        at once for everyone, then delete."""
        trash = os.path.join(self.root, "ingest", f".rm-{uuid.uuid4().hex}")
        try:
            os.rename(d, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def status(self, ref):
        d = self._ingest_dir(ref)
        st = self._status_of(d)
        if st is None:
            raise NotFound(f"content ingest {ref!r}: not found")
        return st

    def _status_of(self, d):
        ref = _read_text(os.path.join(d, "ref"))
        if ref is None:
            return None
        try:
            dst = os.stat(os.path.join(d, "data"))
        except FileNotFoundError:
            return None
        started = int(_read_text(os.path.join(d, "startedat"), "0") or 0)
        updated = max(int(_read_text(os.path.join(d, "updatedat"), "0") or 0), dst.st_mtime_ns)
        return Status(ref=ref, offset=dst.st_size,
                      total=int(_read_text(os.path.join(d, "total"), "0") or 0),
                      expected=_read_text(os.path.join(d, "expected"), "") or "",
                      started_at=started, updated_at=updated)

    def list_statuses(self, filter=None):
        out = []
        base = os.path.join(self.root, "ingest")
        for name in sorted(os.listdir(base)):
            if name.startswith("."):
                continue
            st = self._status_of(os.path.join(base, name))
            if st is not None and (filter is None or filter(st)):
                out.append(st)
        return out

    def abort(self, ref):
        """Remove a partial ingest. NotFound when there is none; RefLocked while written."""
        d = self._ingest_dir(ref)
        if not os.path.isdir(d):
            raise NotFound(f"content ingest {ref!r}: not found")
        d, fd = self._lock(ref)
        try:
            exists = os.path.exists(os.path.join(d, "ref"))
            self._remove_ingest(d)
        finally:
            os.close(fd)
        if not exists:
            raise NotFound(f"content ingest {ref!r}: not found")


class Writer:
    """One ingest in progress. Write bytes, then commit(); close() keeps the partial data for
    a later writer of the same ref to resume; abort() drops it."""

    def __init__(self, store, ref, ingest_dir, lock_fd, total, expected):
        self._store = store
        self.ref = ref
        self._dir = ingest_dir
        self._lock_fd = lock_fd
        self._data = os.path.join(ingest_dir, "data")
        ref_path = os.path.join(ingest_dir, "ref")
        stored_ref = _read_text(ref_path)
        if stored_ref is not None and os.path.exists(self._data):
            stored_total = int(_read_text(os.path.join(ingest_dir, "total"), "0") or 0)
            stored_expected = _read_text(os.path.join(ingest_dir, "expected"), "") or ""
            if total and stored_total and total != stored_total:
                raise FailedPrecondition(f"content ingest {ref!r}: total {total} differs from the "
                                         f"resumed ingest's {stored_total}; abort the ref to start over")
            if expected and stored_expected and expected != stored_expected:
                raise FailedPrecondition(f"content ingest {ref!r}: expected {expected} differs from "
                                         f"the resumed ingest's {stored_expected}; abort the ref to start over")
            total = total or stored_total
            expected = expected or stored_expected
        else:
            _write_atomic(os.path.join(ingest_dir, "startedat"), str(time.time_ns()))
            _write_atomic(ref_path, ref)
        if total:
            _write_atomic(os.path.join(ingest_dir, "total"), str(total))
        if expected:
            _write_atomic(os.path.join(ingest_dir, "expected"), expected)
        self.total = total
        self.expected = expected
        self._alg = parse_digest(expected)[0] if expected else "sha256"
        self._fd = os.open(self._data, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.offset = os.lseek(self._fd, 0, os.SEEK_END)
        self._hash = _hash_file(self._data, self._alg, self.offset)
        self._touch()

    def _touch(self):
        _write_atomic(os.path.join(self._dir, "updatedat"), str(time.time_ns()))

    def _check_open(self):
        if self._fd < 0:
            raise FailedPrecondition(f"content ingest {self.ref!r}: writer already closed")

    def write(self, data):
        self._check_open()
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self._hash.update(view[:n])
            self.offset += n
            view = view[n:]
        return len(data)

    def digest(self):
        return f"{self._alg}:{self._hash.hexdigest()}"

    def status(self):
        return self._store.status(self.ref)

    def truncate(self, size):
        """Cut the ingest back to `size` bytes (0 restarts it)."""
        self._check_open()
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        self.offset = size
        self._hash = _hash_file(self._data, self._alg, size)

    def commit(self, size=None, expected=None, labels=None):
        """Verify and publish the blob; returns its digest. SizeMismatch keeps the partial
        ingest (it may be resumed); DigestMismatch drops it (its bytes are wrong); when the
        blob already exists the ingest is dropped and AlreadyExists raised."""
        self._check_open()
        want = size if size else self.total
        if want and want != self.offset:
            raise SizeMismatch(f"content ingest {self.ref!r}: wrote {self.offset} bytes, expected "
                               f"{want}; write the rest or abort the ref")
        expected = expected or self.expected
        if expected:
            alg = parse_digest(expected)[0]
            if alg == self._alg:
                actual = self.digest()
            else:
                os.fsync(self._fd)
                actual = f"{alg}:{_hash_file(self._data, alg).hexdigest()}"
        else:
            actual = self.digest()
        if expected and actual != expected:
            self.abort()
            raise DigestMismatch(f"content ingest {self.ref!r}: got {actual}, expected {expected}; "
                                 "the data was discarded, fetch it again")
        os.fsync(self._fd)
        target = self._store.path(actual)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.chmod(self._data, 0o444)
        try:
            os.link(self._data, target)
        except FileExistsError:
            self.abort()
            raise AlreadyExists(f"content {actual}: already exists") from None
        dfd = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)  # the new name survives a crash, not only the bytes
        finally:
            os.close(dfd)
        if labels:
            self._store._write_labels(actual, labels)
        self.abort()  # drops the ingest; the blob keeps its own link
        return actual

    def close(self):
        """Stop writing; the partial ingest stays for a later writer of the same ref."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            try:
                self._touch()
            except OSError:
                pass
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def abort(self):
        """Drop the ingest and release the ref."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            try:
                self._store._remove_ingest(self._dir)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

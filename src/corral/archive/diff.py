"""Diffs of a changed tree as an OCI layer tar (containerd's diff "compare").

An overlay upper dir already is the diff (write_tree with upper=True spells its whiteouts the
OCI way). For two plain trees (the native snapshotter), walk both: what is new or changed in
`upper` goes in with its parent dirs, what is gone from it becomes a `.wh.` whiteout.
"""

import os
import stat
import tarfile

from corral.archive.apply import WHITEOUT_PREFIX
from corral.archive.create import _xattrs, write_tree


def write_overlay_diff(upper, fileobj):
    write_tree(upper, fileobj, upper=True)


def _same(a, b):
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev == b.st_rdev
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def write_tree_diff(lower, upper, fileobj):
    """The changes from tree `lower` to tree `upper` as an uncompressed layer tar."""
    changed = []         # relative paths, in walk order
    deleted = []
    for dirpath, dirnames, filenames in os.walk(upper):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, upper)
        for name in sorted(dirnames + filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            a, b = _lstat(os.path.join(lower, rel)), os.lstat(os.path.join(upper, rel))
            same = a is not None and _same(a, b)
            if same and not stat.S_ISLNK(b.st_mode):
                try:
                    same = _xattrs(os.path.join(lower, rel)) == _xattrs(os.path.join(upper, rel))
                except OSError:
                    pass
            elif same:
                same = os.readlink(os.path.join(lower, rel)) == os.readlink(os.path.join(upper, rel))
            if not same:
                changed.append(rel)
    for dirpath, dirnames, filenames in os.walk(lower):
        rel_dir = os.path.relpath(dirpath, lower)
        keep = []
        for name in sorted(dirnames + filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if _lstat(os.path.join(upper, rel)) is None:
                deleted.append(rel)
            elif name in dirnames:
                keep.append(name)
        dirnames[:] = [d for d in dirnames if d in keep]
    entries = set(changed)
    for rel in changed + deleted:             # parents of every change go in too
        parent = os.path.dirname(rel)
        while parent and parent not in entries:
            entries.add(parent)
            parent = os.path.dirname(parent)
    seen = {}
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in sorted(entries | {os.path.join(os.path.dirname(d), WHITEOUT_PREFIX + os.path.basename(d))
                                     for d in deleted}):
            base = os.path.basename(rel)
            if base.startswith(WHITEOUT_PREFIX):
                info = tarfile.TarInfo(rel)
                tar.addfile(info)
                continue
            full = os.path.join(upper, rel)
            info = tar.gettarinfo(full, arcname=rel)
            info.uname = info.gname = ""
            st = os.lstat(full)
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                if key in seen:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, seen[key], 0
                else:
                    seen[key] = rel
            info.pax_headers = _xattrs(full)
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)

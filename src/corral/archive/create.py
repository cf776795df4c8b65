"""Write a directory tree as a layer tar: sorted, with owners, modes, mtimes, xattrs, links.

With upper=True the tree is an overlay upper dir: char 0/0 whiteouts become `.wh.name` and
opaque dirs (trusted.overlay.opaque=y) get a `.wh..wh..opq` entry, as OCI layers spell them.
"""

import os
import stat
import tarfile

from corral.archive.apply import OPAQUE, WHITEOUT_PREFIX


def _xattrs(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for n in names:
        if n.startswith("trusted.overlay.") or n.startswith("security.selinux"):
            continue
        try:
            out["SCHILY.xattr." + n] = os.getxattr(path, n, follow_symlinks=False).decode("utf-8", "surrogateescape")
        except OSError:
            pass
    return out


def write_tree(root, fileobj, upper=False, fixed_mtime=None):
    """Write the tree under `root` as an uncompressed tar to `fileobj`."""
    seen = {}
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            if upper and rel_dir != ".":
                try:
                    if os.getxattr(dirpath, "trusted.overlay.opaque") == b"y":
                        info = tarfile.TarInfo(os.path.join(rel_dir, OPAQUE))
                        info.mtime = 0 if fixed_mtime is None else fixed_mtime
                        tar.addfile(info)
                except OSError:
                    pass
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                arc = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(full)
                if upper and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    info = tarfile.TarInfo(os.path.join(os.path.dirname(arc), WHITEOUT_PREFIX + name))
                    info.mtime = 0 if fixed_mtime is None else fixed_mtime
                    tar.addfile(info)
                    continue
                info = tar.gettarinfo(full, arcname=arc)
                info.uname = info.gname = ""
                if fixed_mtime is not None:
                    info.mtime = fixed_mtime
                key = (st.st_dev, st.st_ino)
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                    if key in seen:
                        info.type = tarfile.LNKTYPE
                        info.linkname = seen[key]
                        info.size = 0
                    else:
                        seen[key] = arc
                info.pax_headers = _xattrs(full)
                if info.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)

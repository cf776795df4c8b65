"""The native snapshotter: every snapshot is a full copy of its parent in snapshots/<id>,
mounted by bind (containerd's "native"); a view of a parent binds the parent read-only. Works on any filesystem; costs disk and time."""

import os
import subprocess

from corral.metadata.errors import StorageError
from corral.snapshots.base import Kind, Mount, Snapshotter


class NativeSnapshotter(Snapshotter):
    name = "native"

    def _fs(self, sid):
        return self._dir(sid)

    def _make_dirs(self, path, kind, parent_ids):
        os.chmod(path, 0o755)
        if not parent_ids or kind == Kind.VIEW:
            return  # a view of a parent mounts the parent itself, read-only
        # cp -a keeps owners, modes, times, xattrs, hardlinks, device nodes and sparse files.
        src = self._fs(parent_ids[0])
        r = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise StorageError(f"native snapshot: copying parent {src} failed: "
                               f"{r.stderr.strip() or r.returncode}")

    def _mounts(self, sid, kind, parent_ids):
        source = self._fs(sid) if kind == Kind.ACTIVE or not parent_ids else self._fs(parent_ids[0])
        return [Mount("bind", source, ["rbind", "ro" if kind == Kind.VIEW else "rw"])]

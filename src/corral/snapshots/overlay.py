"""The overlayfs snapshotter (the default), with containerd's layout and mounts:
snapshots/<id>/fs is a snapshot's upper (its own changes), snapshots/<id>/work overlay's
workdir. An active snapshot mounts as overlay (upperdir + workdir + the parents' fs dirs as
lowerdir, nearest parent first); with no parent, or a view of one parent, it is a bind mount.
"""

import os

from corral.snapshots.base import Kind, Mount, Snapshotter


def _index_off():
    # containerd turns overlay's index feature off when the kernel has it, so that a lower
    # layer can be mounted by more than one overlay.
    return os.path.exists("/sys/module/overlay/parameters/index")


class OverlaySnapshotter(Snapshotter):
    name = "overlayfs"

    def __init__(self, root):
        super().__init__(root)
        self._options = ["index=off"] if _index_off() else []

    def _fs(self, sid):
        return os.path.join(self._dir(sid), "fs")

    def _make_dirs(self, path, kind, parent_ids):
        fs = os.path.join(path, "fs")
        os.mkdir(fs, 0o755)
        if kind == Kind.ACTIVE:
            os.mkdir(os.path.join(path, "work"), 0o711)
        if parent_ids:
            # The container's root directory keeps the owner of the image's root.
            st = os.stat(self._fs(parent_ids[0]))
            os.chown(fs, st.st_uid, st.st_gid)

    def _mounts(self, sid, kind, parent_ids):
        if not parent_ids:
            ro = "ro" if kind == Kind.VIEW else "rw"
            return [Mount("bind", self._fs(sid), [ro, "rbind"])]
        options = list(self._options)
        if kind == Kind.ACTIVE:
            options += [f"workdir={os.path.join(self._dir(sid), 'work')}", f"upperdir={self._fs(sid)}"]
        elif len(parent_ids) == 1:
            return [Mount("bind", self._fs(parent_ids[0]), ["ro", "rbind"])]
        options.append("lowerdir=" + ":".join(self._fs(p) for p in parent_ids))
        return [Mount("overlay", "overlay", options)]

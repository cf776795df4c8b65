"""A container's saved state: <root>/<id>/state.json, plus the exec FIFO beside it.

Status is read from the live system each time: the init's PID together with its start time
(field 22 of /proc/<pid>/stat, so a reused PID is not mistaken for the init), the exec FIFO
(present until `start`), and the cgroup freezer.
"""

from corral.oci import jsonfast as json  # json.loads/dumps without importing json (re)
import os

from corral.oci.errors import RuntimeFailure

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id):
    if (not container_id or container_id in (".", "..") or len(container_id) > 1024
            or not set(container_id) <= ID_CHARS):
        raise RuntimeFailure(f"invalid container ID {container_id!r}: use letters, digits and "
                             "'_+-.' only")


def proc_start_time(pid):
    """The start time (clock ticks since boot) of a live process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class Container:
    """One container's state. `config` is the spec dict saved at create time."""

    def __init__(self, root, container_id, data):
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data = data
        self.bundle = data.get("bundle", "")
        self.rootfs = data.get("rootfs", "")
        self.pid = data.get("pid", 0)
        self.start_time = data.get("start_time")
        self.config = data.get("config") or {}
        self.created = data.get("created", "")
        self.owner = data.get("owner", "")
        self.annotations = self.config.get("annotations") or {}
        self._manager = None

    @property
    def fifo_path(self):
        return os.path.join(self.dir, EXEC_FIFO)

    def alive(self):
        return bool(self.pid) and self.start_time is not None and proc_start_time(self.pid) == self.start_time

    def status(self):
        if not self.pid:
            return "creating"
        if not self.alive():
            return "stopped"
        if os.path.exists(self.fifo_path):
            return "created"
        mgr = self.cgroup_manager()
        if mgr is not None:
            try:
                if mgr.frozen():
                    return "paused"
            except (OSError, RuntimeFailure):
                pass
        return "running"

    def cgroup_manager(self):
        """The container's cgroup manager, reopened from the saved state (None if it had none)."""
        if self._manager is None and self.data.get("cgroup"):
            from corral.oci.linux import cgroups
            self._manager = cgroups.load_manager(self.data["cgroup"])
        return self._manager

    def set_cgroup_manager(self, manager):
        self._manager = manager
        self.data["cgroup"] = manager.saved() if manager is not None else None

    def oci_state(self):
        """runc's state JSON (OCI state plus rootfs, created, owner)."""
        return {
            "ociVersion": self.config.get("ociVersion", ""),
            "id": self.id,
            "pid": self.pid if self.status() in ("created", "running", "paused") else 0,
            "status": self.status(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        }

    def hook_state(self, status=None):
        """The OCI state given to hooks on stdin."""
        return {
            "ociVersion": self.config.get("ociVersion", ""),
            "id": self.id,
            "status": status or self.status(),
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.annotations,
        }

    def save(self):
        """Write state.json atomically (temp file + rename)."""
        self.data.update(bundle=self.bundle, rootfs=self.rootfs, pid=self.pid,
                         start_time=self.start_time, config=self.config, created=self.created,
                         owner=self.owner)
        tmp = os.path.join(self.dir, STATE_FILE + ".tmp")
        with open(tmp, "wb") as f:  # binary: no text layer to set up
            f.write(json.dumps(self.data).encode())
        os.rename(tmp, os.path.join(self.dir, STATE_FILE))


def load(ctx, container_id):
    """The saved container `container_id` under ctx.root; RuntimeFailure if it does not exist."""
    root = ctx.root if hasattr(ctx, "root") else ctx
    check_id(container_id)
    path = os.path.join(root, container_id, STATE_FILE)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        raise RuntimeFailure(f"container {container_id} does not exist") from None
    except (OSError, ValueError) as e:
        raise RuntimeFailure(f"cannot read the state of container {container_id} ({path}): {e}; "
                             f"remove it with 'delete --force {container_id}'") from None
    return Container(root, container_id, data)


def list_ids(ctx):
    """IDs of every container with a saved state under ctx.root, sorted."""
    root = ctx.root if hasattr(ctx, "root") else ctx
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.exists(os.path.join(root, n, STATE_FILE)))

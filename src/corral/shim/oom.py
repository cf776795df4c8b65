"""OOM notices for /tasks/oom: on cgroup v1, an eventfd registered on the container's
memory.oom_control (fires when the kernel OOM-kills in that cgroup); on cgroup v2, the oom_kill
count of memory.events, compared when the init process exits."""

import os


def memory_cgroup(pid):
    """('v1' | 'v2', directory) of pid's memory cgroup, or None."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    v1 = next((p for _, ctrls, p in lines if "memory" in ctrls.split(",")), None)
    v2 = next((p for hid, ctrls, p in lines if hid == "0" and ctrls == ""), None)
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[-1].split(",")
            if fstype == "cgroup" and "memory" in opts:
                mounts.setdefault("v1", fields[4])
            elif fstype == "cgroup2":
                mounts.setdefault("v2", fields[4])
    if v1 is not None and "v1" in mounts:
        return "v1", os.path.join(mounts["v1"], v1.lstrip("/"))
    if v2 is not None and "v2" in mounts:
        return "v2", os.path.join(mounts["v2"], v2.lstrip("/"))
    return None


def _oom_kills(path):
    try:
        with open(os.path.join(path, "memory.events")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


class OOMWatcher:
    def __init__(self, loop, on_oom):
        self.loop = loop
        self.on_oom = on_oom  # on_oom(container id)
        self.watches = {}  # container id -> ("v1", path, eventfd, control fd) | ("v2", path, kills)

    def watch(self, cid, pid):
        found = memory_cgroup(pid)
        if found is None:
            return
        kind, path = found
        if kind == "v2":
            self.watches[cid] = ("v2", path, _oom_kills(path))
            return
        try:
            control = os.open(os.path.join(path, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            with open(os.path.join(path, "cgroup.event_control"), "w") as f:
                f.write(f"{efd} {control}")
        except OSError:
            os.close(efd)
            os.close(control)
            return
        self.watches[cid] = ("v1", path, efd, control)
        self.loop.add_reader(efd, self._fired, cid)

    def _fired(self, cid):
        w = self.watches.get(cid)
        if w is None:
            return
        try:
            os.eventfd_read(w[2])
        except OSError:
            return
        # the eventfd also fires when the cgroup is removed
        if os.path.exists(os.path.join(w[1], "cgroup.event_control")):
            self.on_oom(cid)
        else:
            self.remove(cid)

    def exited(self, cid):
        """The init exited: on v2, report an OOM kill that happened since the watch began."""
        w = self.watches.get(cid)
        if w and w[0] == "v2" and _oom_kills(w[1]) > w[2]:
            self.on_oom(cid)

    def remove(self, cid):
        w = self.watches.pop(cid, None)
        if w and w[0] == "v1":
            self.loop.remove_reader(w[2])
            os.close(w[2])
            os.close(w[3])

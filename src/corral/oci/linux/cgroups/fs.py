"""Reading and writing cgroupfs files with one-line errors, and removing cgroup directories."""

import errno
import os
import time

from corral.oci.errors import RuntimeFailure


def write(directory, name, value):
    path = os.path.join(directory, name)
    data = str(value).encode()
    try:
        # no O_CREAT: a missing file means the controller (or the feature) is absent
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RuntimeFailure(f"cannot set {name} to {value}: {path} does not exist (the cgroup "
                             "controller or the kernel feature is missing on this host)") from None
    except OSError as e:
        raise RuntimeFailure(f"cannot open {path} to set {value}: {e.strerror}") from None
    try:
        os.write(fd, data)
    except OSError as e:
        hint = {errno.EINVAL: "the kernel rejects this value",
                errno.EBUSY: "the cgroup's current use is above it or a child uses it",
                errno.EPERM: "not permitted (are you root?)",
                errno.EOPNOTSUPP: "not supported by this kernel"}.get(e.errno, e.strerror)
        raise RuntimeFailure(f"cannot set {name} to {value!s} in {directory}: {hint}") from None
    finally:
        os.close(fd)


def read(directory, name):
    with open(os.path.join(directory, name)) as f:
        return f.read()


def read_int(directory, name, default=0):
    """An integer file ("max" counts as default); default when the file is missing."""
    try:
        text = read(directory, name).strip()
    except OSError:
        return default
    if text == "max":
        return default
    try:
        return int(text)
    except ValueError:
        return default


def read_keyed(directory, name):
    """A "key value" per line file (memory.stat, cpu.stat...) as a dict of ints."""
    out = {}
    try:
        text = read(directory, name)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def makedirs(path):
    """Create path and its missing parents; return the directories made, top first."""
    made = []
    p = path
    while not os.path.isdir(p):
        made.append(p)
        p = os.path.dirname(p)
    for d in reversed(made):
        try:
            os.mkdir(d, 0o755)
        except FileExistsError:
            pass
        except OSError as e:
            raise RuntimeFailure(f"cannot create the cgroup {d}: {e.strerror}") from None
    return list(reversed(made))


def remove(path, timeout=2.0):
    """Remove a cgroup directory and any child cgroups under it, retrying while EBUSY (a
    process that just died is still leaving). Kills nothing."""
    try:
        os.rmdir(path)  # the usual case: an empty leaf, removed without walking it
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # children, or still busy: walk it below
    if not os.path.isdir(path):
        return
    deadline = time.monotonic() + timeout
    dirs = [root for root, _d, _f in os.walk(path, topdown=False)]
    for d in dirs:
        delay = 0.002
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise RuntimeFailure(f"cannot remove the cgroup {d}: {e.strerror} (processes "
                                         "still in it? kill them, then retry)") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)


def procs(path, recursive=True):
    """PIDs in a cgroup directory (and its children)."""
    pids = []
    for root, _dirs, _files in (os.walk(path) if recursive else [(path, None, None)]):
        try:
            with open(os.path.join(root, "cgroup.procs")) as f:
                pids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            continue
    return pids

"""`corral-oci-hook [--data-root DIR] createRuntime|poststop`: the OCI hook that attaches a
container to its CNI networks and detaches it again. The runtime gives the container's state
on stdin: its id, the pid of its init (whose network namespace is configured) and the
`corral/...` annotations that name the networks, ports and hostname. Errors are one line on
stderr and exit status 1; the runtime then fails the create (and cleans up)."""

import json
import sys

USAGE = "usage: corral-oci-hook [--data-root DIR] createRuntime|poststop  (OCI state JSON on stdin)"
DEFAULT_DATA_ROOT = "/var/lib/corral"


def _args(argv):
    data_root, stage = DEFAULT_DATA_ROOT, None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--data-root" and i + 1 < len(argv):
            data_root = argv[i + 1]
            i += 1
        elif a.startswith("--data-root="):
            data_root = a.partition("=")[2]
        elif stage is None and not a.startswith("-"):
            stage = a
        else:
            raise ValueError(f"unexpected argument {a!r}; {USAGE}")
        i += 1
    if stage not in ("createRuntime", "poststop"):
        raise ValueError(f"unknown or missing hook stage {stage!r}; {USAGE}")
    return data_root, stage


def _container(state):
    from corral.cni.attach import Container
    ann = state.get("annotations") or {}
    cid = state.get("id")
    if not cid:
        raise ValueError("the state on stdin has no container id")

    def as_list(key):
        try:
            value = json.loads(ann.get(key) or "[]")
        except ValueError:
            raise ValueError(f"annotation {key} is not JSON: {ann.get(key)!r}") from None
        if not isinstance(value, list):
            raise ValueError(f"annotation {key} is not a JSON list")
        return value

    return Container(id=cid, namespace=ann.get("corral/namespace") or "default", name=ann.get("corral/name") or "",
                     hostname=ann.get("corral/hostname") or "", networks=as_list("corral/networks"),
                     ports=as_list("corral/ports"))


def run(argv, stdin):
    data_root, stage = _args(argv)
    try:
        state = json.loads(stdin.read() or "null")
    except ValueError as e:
        raise ValueError(f"the state on stdin is not JSON: {e}") from None
    if not isinstance(state, dict):
        raise ValueError("no OCI state on stdin")
    if stage == "createRuntime" and _networks(state) == []:
        # --network none in a spec made before the runtime set lo up itself (new specs have
        # no hook for it): lo only, without corral.cni.attach and the plugin chain
        _loopback_up(_pid(state))
        return
    c = _container(state)
    networks = [n for n in c.networks if n not in ("host", "none")]
    from corral.cni import attach
    if stage == "createRuntime":
        pid = _pid(state)
        if not networks:
            attach.loopback_only(pid)
            return
        c.networks = networks
        attach.setup(data_root, c, pid)
    else:
        attach.teardown(data_root, c.id, networks)


def _pid(state):
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise ValueError("the state on stdin has no pid of the container's process")
    return pid


def _networks(state):
    """The CNI networks the annotations name ("host" and "none" are none), or None when they
    are not plain (the full path reports what is wrong)."""
    if not state.get("id"):
        return None
    try:
        value = json.loads((state.get("annotations") or {}).get("corral/networks") or "[]")
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    return [n for n in value if n not in ("host", "none")]


def _loopback_up(pid):
    """Set lo up in the network namespace of `pid` (the hook is a process of its own: it may
    enter the namespace)."""
    import os
    from corral.oci.linux import namespaces
    from corral.oci.linux import syscalls as sc
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(fd, sc.CLONE_NEWNET)
    finally:
        os.close(fd)
    namespaces.loopback_up()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv, sys.stdin)
    except (ValueError, OSError) as e:  # NetworkError is a ValueError
        sys.stderr.write(f"corral-oci-hook: {e}\n")
        return 1
    except Exception as e:  # a bug: still one line for the runtime's error message
        sys.stderr.write(f"corral-oci-hook: internal error: {type(e).__name__}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a container's OCI spec needs for networking, the nerdctl way: a new network namespace
that the `corral-oci-hook` attaches to CNI networks at createRuntime and detaches at
poststop, the facts the hook needs as `corral/...` annotations, and /etc/hostname,
/etc/hosts and /etc/resolv.conf bind-mounted from the container's directory."""

import json
import os
import sys

from corral.cni import conflist, etcfiles
from corral.cni.errors import NetworkError
# socket (for host mode), corral.cni.cache and corral.cni.ports (for CNI networks and -p) are
# imported where used: `corral run --network none` makes its spec without them

HOOK = "corral-oci-hook"
HOOK_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

# annotations (the labels' names: the spec mirrors the container record)
NETWORKS = "corral/networks"
PORTS = "corral/ports"
HOSTNAME = "corral/hostname"
NAME = "corral/name"
NAMESPACE = "corral/namespace"

ETC_FILES = ("hostname", "hosts", "resolv.conf")


def hook_path():
    path = os.path.join(os.path.dirname(sys.executable), HOOK)
    if not os.access(path, os.X_OK):
        raise NetworkError(f"{path} is missing: reinstall corral (pip install -e .) to get the network hook")
    return path


def apply(spec, *, data_root, namespace, container_id, networks, ports, hostname, dns=None, name=None):
    """Set up `spec` (a dict) for `networks` (["bridge"], ["mynet"], ["host"] or ["none"]) with
    published `ports` (port dicts or -p strings). Bad input raises NetworkError (a ValueError)
    with one clear line and leaves nothing behind."""
    networks = list(networks or [conflist.DEFAULT_NETWORK])
    if ports and not all(isinstance(p, dict) for p in ports):
        from corral.cni.ports import parse_publish
        ports = [p if isinstance(p, dict) else parse_publish(p) for p in ports]
    ports = list(ports or [])
    pseudo = [n for n in networks if n in conflist.PSEUDO_NETWORKS]
    if pseudo and len(networks) > 1:
        raise NetworkError(f"network {pseudo[0]} cannot be combined with other networks")
    mode = pseudo[0] if pseudo else "cni"
    if ports and mode != "cni":
        raise NetworkError(f"-p needs a network: ports cannot be published with --network {mode}")
    annotations = spec.setdefault("annotations", {})
    name = name or annotations.get(NAME) or ""
    linux = spec.setdefault("linux", {})
    namespaces = [n for n in linux.get("namespaces") or [] if n.get("type") != "network"]

    if mode == "host":
        namespaces = [n for n in namespaces if n.get("type") != "uts"]
        spec.pop("hostname", None)
        import socket
        hostname = socket.gethostname()
        hosts = _read("/etc/hosts")
        resolv = _read(etcfiles.HOST_RESOLV_CONF) if not dns else etcfiles.resolv_text(dns)
    else:
        namespaces.append({"type": "network"})
        hosts = etcfiles.hosts_text(hostname, aliases=[name])
        resolv = etcfiles.resolv_text(dns)
    linux["namespaces"] = namespaces

    hooks = spec.setdefault("hooks", {})
    if mode == "cni":
        for n in networks:
            conflist.find(data_root, n)  # an unknown network fails here, before anything is made
        # early word for ports taken now; the hook checks again at each ADD (start, restart)
        from corral.cni import cache
        from corral.cni.ports import check_free
        check_free(ports, cache.published(data_root, container_id))
    # --network none: lo only, which the OCI runtime sets up in each network namespace it
    # creates (corral-runc, runc and crun do), so no hook at all
    if mode == "cni":
        path = hook_path()
        base = [HOOK, "--data-root", data_root]
        hooks.setdefault("createRuntime", []).append({"path": path, "args": base + ["createRuntime"], "env": HOOK_ENV})
        hooks.setdefault("poststop", []).append({"path": path, "args": base + ["poststop"], "env": HOOK_ENV})

    annotations[NETWORKS] = json.dumps(networks if mode == "cni" else [mode])
    annotations[PORTS] = json.dumps(ports)
    annotations[HOSTNAME] = hostname or ""
    annotations[NAMESPACE] = namespace
    if name:
        annotations[NAME] = name

    d = etcfiles.container_dir(data_root, namespace, container_id)
    etcfiles.write(os.path.join(d, "hostname"), f"{hostname}\n")
    etcfiles.write(os.path.join(d, "hosts"), hosts)
    etcfiles.write(os.path.join(d, "resolv.conf"), resolv)
    targets = {f"/etc/{f}" for f in ETC_FILES}
    mounts = [m for m in spec.get("mounts") or [] if m.get("destination") not in targets]
    for f in ETC_FILES:
        mounts.append({"destination": f"/etc/{f}", "type": "bind", "source": os.path.join(d, f),
                       "options": ["rbind", "rprivate"]})
    spec["mounts"] = mounts
    return spec


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""

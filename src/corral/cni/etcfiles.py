"""The container's /etc/hostname, /etc/hosts and /etc/resolv.conf: files under
`<data-root>/containers/<namespace>/<id>/` that the spec bind-mounts into the container.
Updates write in place (same inode), so a running container sees them through its mount."""

import ipaddress
import os
import re

HOST_RESOLV_CONF = "/etc/resolv.conf"
# what docker falls back to when the host only has a resolver on its own loopback
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")

_HOSTS_HEAD = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def container_dir(data_root, namespace, container_id):
    return os.path.join(data_root, "containers", namespace, container_id)


def write(path, text):
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    with open(path, "w") as f:  # truncates the same inode: bind mounts keep seeing it
        f.write(text)


# a name that may go into a hosts file (no blanks or line breaks: one container must not be
# able to add lines to another's hosts file through its hostname)
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _names(names):
    return " ".join(dict.fromkeys(n for n in names if n and _HOST_NAME.match(n)))


def hosts_text(hostname, own_ips=(), aliases=(), peers=()):
    """peers: [(ip, [names])] of other containers on the same user network."""
    lines = [_HOSTS_HEAD]
    names = _names((hostname, *aliases))
    for ip in own_ips:
        if names:
            lines.append(f"{ip}\t{names}\n")
    for ip, peer_names in peers:
        peer = _names(peer_names)
        if peer:
            lines.append(f"{ip}\t{peer}\n")
    return "".join(lines)


def resolv_text(dns=None, source=HOST_RESOLV_CONF):
    """The host's resolv.conf without loopback nameservers (they do not answer inside the
    container's namespace), or with `dns` servers instead."""
    try:
        with open(source) as f:
            host = f.read().splitlines()
    except OSError:
        host = []
    others, servers = [], []
    for line in host:
        fields = line.split()
        if fields and fields[0] == "nameserver":
            if len(fields) > 1 and not _is_loopback(fields[1]):
                servers.append(fields[1])
        elif fields and fields[0] in ("search", "domain", "options"):
            others.append(line)
    if dns:
        servers = list(dns)
    if not servers:
        servers = list(FALLBACK_NAMESERVERS)
    return "".join(f"{line}\n" for line in others + [f"nameserver {s}" for s in servers])


def _is_loopback(addr):
    try:
        return ipaddress.ip_address(addr.split("%")[0]).is_loopback
    except ValueError:
        return False

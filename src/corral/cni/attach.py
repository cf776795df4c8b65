"""One container's networks: set up (loopback, then each network's chain ADD with eth0, eth1...)
and torn down (each chain DEL from the cache). Both hold one lock per data root, are
idempotent, and keep the container's /etc/hosts (and those of its peers on user networks)
up to date."""

import fcntl
import os
from dataclasses import dataclass, field

from corral.cni import cache, conflist, etcfiles, netns, plugins
from corral.cni.errors import NetworkError

LOOPBACK = {"cniVersion": conflist.CNI_VERSION, "name": "cni-loopback", "plugins": [{"type": "loopback"}]}


@dataclass
class Container:
    id: str
    namespace: str = "default"
    name: str = ""
    hostname: str = ""
    networks: list = field(default_factory=list)
    ports: list = field(default_factory=list)   # [{hostIP, hostPort, containerPort, protocol}]


class _Lock:
    def __init__(self, data_root):
        d = os.path.join(data_root, "cni")
        os.makedirs(d, mode=0o700, exist_ok=True)
        self.fd = os.open(os.path.join(d, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def port_mappings(ports):
    out = []
    for p in ports or []:
        m = {"hostPort": int(p["hostPort"]), "containerPort": int(p["containerPort"]),
             "protocol": p.get("protocol") or "tcp"}
        if p.get("hostIP"):
            m["hostIP"] = p["hostIP"]
        out.append(m)
    return out


def loopback_only(pid):
    """Bring up lo in the namespace of `pid` (--network none)."""
    plugins.add(LOOPBACK, plugins.RuntimeConf("none", f"/proc/{pid}/ns/net", "lo"))


def setup(data_root, c, pid):
    """Attach container `c` (its init is `pid`) to its networks; the cache entries."""
    with _Lock(data_root):
        if c.ports:
            # ports are checked when the container is made, and again here, at each start
            # (under the lock, so two starts cannot both take a port): another container may
            # have published the port, or a host process bound it, since
            from corral.cni.ports import check_free
            check_free(c.ports, cache.published(data_root, c.id))
        old = netns.path_of(data_root, c.id)
        if netns.is_pinned(old) and not netns.same_namespace(old, f"/proc/{pid}/ns/net"):
            # attachments of an earlier namespace of this container that no poststop undid:
            # DEL them while their namespace is still pinned
            for entry in cache.entries(data_root, c.id):
                _detach_one(data_root, entry, tolerant=True)
            netns.unpin(data_root, c.id)
        path = netns.pin(data_root, c.id, pid)
        done = []
        try:
            plugins.add(LOOPBACK, plugins.RuntimeConf(c.id, path, "lo"))
            for i, name in enumerate(c.networks):
                done.append(_attach_one(data_root, c, path, name, f"eth{i}",
                                        port_mappings(c.ports) if i == 0 else []))
        except BaseException:
            for entry in cache.entries(data_root, c.id):
                _detach_one(data_root, entry, tolerant=True)
            netns.unpin(data_root, c.id)
            raise
        write_hosts(data_root, c.id)
        for peer in _peers(data_root, c.id):
            write_hosts(data_root, peer)
        return done


def _attach_one(data_root, c, path, name, ifname, mappings):
    inode = os.stat(path).st_ino
    entry = cache.load(data_root, name, c.id, ifname)
    if entry and entry.get("result") and entry.get("netnsInode") == inode:
        return entry  # already attached to this very namespace (a repeated hook)
    if entry:  # left from an earlier namespace of this container: release what lives outside it
        _detach_one(data_root, dict(entry, netns=""), tolerant=True)
    conf = conflist.find(data_root, name)
    rt = plugins.RuntimeConf(c.id, path, ifname, args=[("IgnoreUnknown", "1")],
                             capability_args={"portMappings": mappings} if mappings else {})
    entry = {"kind": cache.KIND, "containerId": c.id, "networkName": name, "ifName": ifname, "netns": path,
             "netnsInode": inode,
             "namespace": c.namespace, "name": c.name, "hostname": c.hostname, "config": conf,
             "cniArgs": rt.args, "capabilityArgs": rt.capability_args, "result": None}
    cache.save(data_root, entry)  # before ADD: a half-done ADD is undone from this entry
    entry["result"] = plugins.add(conf, rt)
    cache.save(data_root, entry)
    return entry


def teardown(data_root, container_id, networks=()):
    """Detach a container from every network it was attached to (from the cache; `networks`
    without a cache entry get a DEL with their current config, in case ADD died before
    writing one), release the namespace pin and update peers' hosts files. Tolerant of
    a namespace that is gone and of networks already detached; raises the first DEL error
    after trying everything."""
    with _Lock(data_root):
        peers = _peers(data_root, container_id)
        first = None
        entries = cache.entries(data_root, container_id)
        cached = {e["networkName"] for e in entries}
        for i, name in enumerate(networks):
            if name not in cached and name not in conflist.PSEUDO_NETWORKS:
                try:
                    conf = conflist.find(data_root, name)
                except NetworkError:
                    continue  # network removed since; nothing of it can be left to release
                entries.append({"kind": cache.KIND, "containerId": container_id, "networkName": name,
                                "ifName": f"eth{i}", "netns": "", "config": conf, "cniArgs": [],
                                "capabilityArgs": {}, "result": None, "uncached": True})
        for entry in entries:
            try:
                _detach_one(data_root, entry, tolerant=entry.get("uncached", False))
            except NetworkError as e:
                first = first or e
        netns.unpin(data_root, container_id)  # a failed DEL keeps its cache entry, not the namespace
        for peer in peers:
            write_hosts(data_root, peer)
        if first is not None:
            raise first


def _detach_one(data_root, entry, tolerant=False):
    path = entry.get("netns") or ""
    if path and not netns.is_pinned(path):
        path = ""  # the namespace is gone: plugins release what lives outside it
    rt = plugins.RuntimeConf(entry["containerId"], path, entry["ifName"], args=[tuple(a) for a in entry.get("cniArgs") or []],
                             capability_args=entry.get("capabilityArgs") or {})
    try:
        plugins.delete(entry["config"], rt, entry.get("result"))
    except NetworkError:
        if not tolerant:
            raise
    cache.remove(data_root, entry)


def check(data_root, container_id):
    """CHECK every network of a container against its cached result."""
    for entry in cache.entries(data_root, container_id):
        rt = plugins.RuntimeConf(entry["containerId"], entry.get("netns") or "", entry["ifName"],
                                 args=[tuple(a) for a in entry.get("cniArgs") or []],
                                 capability_args=entry.get("capabilityArgs") or {})
        plugins.check(entry["config"], rt, entry.get("result"))


def _is_user_network(name):
    return name != conflist.DEFAULT_NETWORK


def _peers(data_root, container_id):
    """Ids of containers sharing a user network with this one."""
    mine = {e["networkName"] for e in cache.entries(data_root, container_id) if _is_user_network(e["networkName"])}
    return sorted({e["containerId"] for e in cache.entries(data_root)
                   if e["networkName"] in mine and e["containerId"] != container_id and e.get("result")})


def write_hosts(data_root, container_id):
    """Rewrite a container's hosts file from the cache: its own addresses, and its peers'
    on user networks (docker resolves names on user networks only)."""
    own = [e for e in cache.entries(data_root, container_id) if e.get("result")]
    if not own:
        return
    me = own[0]
    d = etcfiles.container_dir(data_root, me.get("namespace") or "default", container_id)
    if not os.path.isdir(d):
        return
    nets = {e["networkName"] for e in own if _is_user_network(e["networkName"])}
    peers = []
    for e in cache.entries(data_root):
        if e["containerId"] != container_id and e["networkName"] in nets and e.get("result"):
            for ip in plugins.ips(e["result"])[:1]:
                peers.append((ip, [e.get("name"), e.get("hostname")]))
    own_ips = [ip for e in own for ip in plugins.ips(e["result"])[:1]]
    etcfiles.write(os.path.join(d, "hosts"),
                   etcfiles.hosts_text(me.get("hostname"), own_ips, [me.get("name")], peers))

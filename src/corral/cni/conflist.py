"""CNI network configuration lists: parsing and validation, lookup by name, and corral's own
networks (`<data-root>/networks/<name>.conflist`, the default `bridge` made on first use)."""

import fcntl
import ipaddress
import json
import os
import re
import time

from corral.cni.errors import NetworkError

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CNI_VERSION = "1.0.0"
SYSTEM_DIRS = ("/etc/cni/net.d",)
DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "corral0"
DEFAULT_SUBNET = "10.4.0.0/24"
PSEUDO_NETWORKS = ("host", "none")
# where `network create` looks for a free /24 when no --subnet is given
AUTO_SUBNETS = ipaddress.ip_network("10.4.0.0/16")

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


def networks_dir(data_root):
    return os.path.join(data_root, "networks")


def ipam_dir(data_root):
    """host-local's allocations for user networks (one directory per network). The default
    network's bridge corral0 is one per host, so its allocations stay in host-local's own
    host-wide directory (/var/lib/cni/networks/bridge) whatever the data root."""
    return os.path.join(data_root, "cni", "networks")


def validate_name(name):
    if not name or len(name) > 64 or not _NAME.match(name):
        raise NetworkError(f"invalid network name {name!r}: use letters, digits, '_', '.' and '-', "
                           "starting with a letter or digit")


def parse(data, source="<config>"):
    """A validated conflist dict from JSON text; a single-plugin .conf becomes a list of one."""
    try:
        conf = json.loads(data)
    except ValueError as e:
        raise NetworkError(f"CNI config {source} is not valid JSON: {e}") from None
    if not isinstance(conf, dict):
        raise NetworkError(f"CNI config {source} is not a JSON object")
    if "plugins" not in conf and "type" in conf:
        plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
        conf = {"cniVersion": conf.get("cniVersion"), "name": conf.get("name"), "plugins": [plugin]}
    validate(conf, source)
    return conf


def validate(conf, source="<config>"):
    version = conf.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        raise NetworkError(f"CNI config {source}: cniVersion {version!r} is not supported "
                           f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
    name = conf.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise NetworkError(f"CNI config {source}: missing or invalid network name {name!r}")
    plugins = conf.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise NetworkError(f"CNI config {source}: 'plugins' must be a non-empty list")
    for i, p in enumerate(plugins):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str) or not p["type"]:
            raise NetworkError(f"CNI config {source}: plugin #{i} has no 'type'")
        if "/" in p["type"]:
            raise NetworkError(f"CNI config {source}: plugin type {p['type']!r} must be a bare name")
        caps = p.get("capabilities", {})
        if not isinstance(caps, dict):
            raise NetworkError(f"CNI config {source}: plugin #{i} 'capabilities' must be an object")


def load_file(path):
    try:
        with open(path) as f:
            data = f.read()
    except OSError as e:
        raise NetworkError(f"cannot read CNI config {path}: {e.strerror}") from None
    return parse(data, path)


def _config_files(d):
    try:
        names = sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(d, n) for n in names if n.endswith((".conflist", ".conf", ".json"))]


def list_all(data_root):
    """[(conflist, path)] of corral's networks then the system's (a name seen once only);
    files that do not parse are skipped."""
    ensure_default(data_root)
    seen, out = set(), []
    for d in (networks_dir(data_root),) + SYSTEM_DIRS:
        for path in _config_files(d):
            try:
                conf = load_file(path)
            except NetworkError:
                continue
            if conf["name"] not in seen:
                seen.add(conf["name"])
                out.append((conf, path))
    return out


def find(data_root, name):
    """The conflist of network `name` (corral's own first, then /etc/cni/net.d)."""
    validate_name(name)
    if name == DEFAULT_NETWORK:
        ensure_default(data_root)
    own = os.path.join(networks_dir(data_root), f"{name}.conflist")
    if os.path.exists(own):
        return load_file(own)
    for conf, _ in list_all(data_root):
        if conf["name"] == name:
            return conf
    raise NetworkError(f"network {name} not found; see `corral network ls`")


def path_of(data_root, name):
    return os.path.join(networks_dir(data_root), f"{name}.conflist")


def subnets(conf):
    """The IP networks a conflist's IPAM hands out (host-local ranges or subnet)."""
    out = []
    for p in conf.get("plugins", []):
        ipam = p.get("ipam") or {}
        for rangeset in ipam.get("ranges") or []:
            for r in rangeset:
                if r.get("subnet"):
                    out.append(ipaddress.ip_network(r["subnet"], strict=False))
        if ipam.get("subnet"):
            out.append(ipaddress.ip_network(ipam["subnet"], strict=False))
    return out


def build(data_root, name, subnet, gateway, *, bridge=None, labels=None, net_id=None, ipam_data_dir=None):
    """A bridge network: bridge (gateway, NAT), host-local IPAM, portmap, firewall."""
    ipam = {"type": "host-local", "ranges": [[{"subnet": str(subnet), "gateway": str(gateway)}]],
            "routes": [{"dst": "0.0.0.0/0"}]}
    if ipam_data_dir:
        ipam["dataDir"] = ipam_data_dir
    import hashlib  # here: corral run --network none loads this module, not OpenSSL
    net_id = net_id or hashlib.sha256(f"{data_root}/{name}/{time.time_ns()}".encode()).hexdigest()
    return {
        "cniVersion": CNI_VERSION,
        "name": name,
        "corral": {"id": net_id,
                   "labels": labels or {}, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "plugins": [
            {"type": "bridge", "bridge": bridge or "br-" + net_id[:12], "isGateway": True, "ipMasq": True,
             "hairpinMode": True,
             "ipam": ipam},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
        ],
    }


class _Lock:
    """An exclusive lock on the networks directory while networks are made or removed."""

    def __init__(self, data_root):
        os.makedirs(networks_dir(data_root), exist_ok=True)
        self.fd = os.open(os.path.join(networks_dir(data_root), ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def _write(path, conf):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    os.rename(tmp, path)


def ensure_default(data_root):
    path = path_of(data_root, DEFAULT_NETWORK)
    if os.path.exists(path):
        return
    with _Lock(data_root):
        if not os.path.exists(path):
            import hashlib
            subnet = ipaddress.ip_network(DEFAULT_SUBNET)
            _write(path, build(data_root, DEFAULT_NETWORK, subnet, next(subnet.hosts()), bridge=DEFAULT_BRIDGE,
                               net_id=hashlib.sha256(b"corral-default-bridge").hexdigest()))


def create(data_root, name, *, subnet=None, gateway=None, driver="bridge", labels=None):
    """Make a user network; a taken name or an overlapping subnet is an error."""
    validate_name(name)
    if driver != "bridge":
        raise NetworkError(f"unsupported network driver {driver!r}: only 'bridge'")
    if name in PSEUDO_NETWORKS or name == DEFAULT_NETWORK:
        raise NetworkError(f"network name {name} is reserved")
    net = None
    if subnet is not None:
        try:
            net = ipaddress.ip_network(subnet, strict=True)
        except ValueError as e:
            raise NetworkError(f"invalid subnet {subnet!r}: {e}") from None
        if net.version != 4 or net.prefixlen > 30:
            raise NetworkError(f"invalid subnet {subnet}: want an IPv4 network of at most /30")
    gw = None
    if gateway is not None:
        if net is None:
            raise NetworkError("--gateway needs --subnet")
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise NetworkError(f"invalid gateway {gateway!r}: not an IP address") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise NetworkError(f"invalid gateway {gateway}: not a host address of subnet {net}")
    ensure_default(data_root)
    with _Lock(data_root):
        existing = list_all(data_root)
        if any(c["name"] == name for c, _ in existing):
            raise NetworkError(f"network {name} already exists")
        taken = [(s, c["name"]) for c, _ in existing for s in subnets(c)]
        if net is None:
            net = _free_subnet([s for s, _ in taken] + _host_routes())
            if net is None:
                raise NetworkError(f"no free /24 left in {AUTO_SUBNETS}; give one with --subnet")
        for s, other in taken:
            if s.version == net.version and s.overlaps(net):
                raise NetworkError(f"subnet {net} overlaps subnet {s} of network {other}")
        conf = build(data_root, name, net, gw or next(net.hosts()), labels=labels, ipam_data_dir=ipam_dir(data_root))
        _write(path_of(data_root, name), conf)
        return conf


def _host_routes():
    """IPv4 networks routed on the host (an automatic subnet must not shadow them)."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f)
            for line in f:
                fields = line.split()
                dest, mask = int(fields[1], 16), int(fields[7], 16)
                if mask == 0:
                    continue
                addr = ipaddress.ip_address(dest.to_bytes(4, "little"))
                prefix = bin(mask).count("1")
                out.append(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))
    except (OSError, ValueError, StopIteration):
        pass
    return out


def _free_subnet(taken):
    for candidate in AUTO_SUBNETS.subnets(new_prefix=24):
        if not any(t.version == 4 and t.overlaps(candidate) for t in taken):
            return candidate
    return None


def remove(data_root, name):
    """Delete a corral network's conflist, its IPAM directory and its bridge device."""
    validate_name(name)
    if name in PSEUDO_NETWORKS or name == DEFAULT_NETWORK:
        raise NetworkError(f"network {name} is built in and cannot be removed")
    path = path_of(data_root, name)
    with _Lock(data_root):
        if not os.path.exists(path):
            if any(c["name"] == name for c, _ in list_all(data_root)):
                raise NetworkError(f"network {name} is not corral's (it is in {SYSTEM_DIRS[0]}); remove its file there")
            raise NetworkError(f"network {name} not found")
        conf = load_file(path)
        os.unlink(path)
    import shutil
    import subprocess
    shutil.rmtree(os.path.join(ipam_dir(data_root), name), ignore_errors=True)
    for p in conf["plugins"]:
        if p.get("type") == "bridge" and p.get("bridge"):
            subprocess.run(["ip", "link", "del", p["bridge"]], capture_output=True)
    return conf

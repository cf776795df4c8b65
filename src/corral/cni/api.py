"""Networks for the Python client API and `corral network`:

    nets = Networks(client, data_root="/var/lib/corral")
    net = nets.create("backend", subnet="10.5.0.0/24")
    print(net.name, net.id, net.subnets, net.containers)
    nets.remove("backend")          # refused while a container uses it

Networks are CNI conflists (corral's own and /etc/cni/net.d's); `client` is a corral.Client,
needed only to know which containers use a network before removing it."""

import json
import os

from corral.cni import cache, conflist, plugins
from corral.cni.errors import NetworkError

DEFAULT_DATA_ROOT = "/var/lib/corral"


class Network:
    def __init__(self, conf, path, data_root):
        self.config = conf
        self.path = path
        self.data_root = data_root

    @property
    def name(self):
        return self.config["name"]

    @property
    def id(self):
        import hashlib
        return (self.config.get("corral") or {}).get("id") or hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def driver(self):
        return self.config["plugins"][0]["type"]

    @property
    def labels(self):
        return (self.config.get("corral") or {}).get("labels") or {}

    @property
    def created(self):
        return (self.config.get("corral") or {}).get("created", "")

    @property
    def subnets(self):
        return [str(s) for s in conflist.subnets(self.config)]

    @property
    def ipam(self):
        out = []
        for p in self.config["plugins"]:
            for rs in (p.get("ipam") or {}).get("ranges") or []:
                out += [{"Subnet": r.get("subnet"), "Gateway": r.get("gateway")} for r in rs]
        return out

    @property
    def containers(self):
        """{container id: {"Name", "Interface", "IPv4Address"}} of containers attached now."""
        out = {}
        for e in cache.entries(self.data_root):
            if e.get("networkName") == self.name and e.get("result"):
                out[e["containerId"]] = {"Name": e.get("name") or "", "Interface": e["ifName"],
                                         "IPv4Address": ",".join(plugins.ips(e["result"]))}
        return out

    def attrs(self):
        """docker's `network inspect` shape, plus the CNI config."""
        ipam_type = next((p["ipam"].get("type", "") for p in self.config["plugins"] if p.get("ipam")), "")
        return {"Name": self.name, "Id": self.id, "Created": self.created, "Driver": self.driver,
                "IPAM": {"Driver": ipam_type, "Config": self.ipam}, "Labels": self.labels,
                "Containers": self.containers, "ConfigFile": self.path, "CNI": self.config}

    def __repr__(self):
        return f"<Network {self.name}>"


class Networks:
    def __init__(self, client=None, data_root=None):
        self.client = client
        self.data_root = data_root or getattr(client, "data_root", None) or DEFAULT_DATA_ROOT

    def list(self):
        return [Network(c, p, self.data_root) for c, p in conflist.list_all(self.data_root)]

    def get(self, name):
        conflist.validate_name(name)
        for net in self.list():
            if net.name == name:
                return net
        conflist.find(self.data_root, name)  # raises the not-found error
        raise NetworkError(f"network {name} not found")

    def create(self, name, subnet=None, gateway=None, driver="bridge", labels=None):
        conf = conflist.create(self.data_root, name, subnet=subnet, gateway=gateway, driver=driver, labels=labels)
        return Network(conf, conflist.path_of(self.data_root, name), self.data_root)

    def users(self, name):
        """Names (or short ids) of containers that use network `name`: by their record's
        `corral/networks` label, or attached now."""
        records = self.client.list_containers() if self.client is not None else []
        users = []
        for c in records:
            try:
                nets = json.loads(c.labels.get("corral/networks") or "[]")
            except ValueError:
                nets = []
            if name in nets:
                users.append(c.labels.get("corral/name") or c.id[:12])
        known = {c.id for c in records}
        attached = {e["containerId"] for e in cache.entries(self.data_root) if e.get("networkName") == name}
        return users + [cid[:12] for cid in sorted(attached - known)]

    def prune(self):
        """Remove corral's own user networks that no container of any namespace uses (those of
        /etc/cni/net.d and the built-in ones stay); their names, as docker's `network prune`."""
        removed = []
        own = conflist.networks_dir(self.data_root)
        namespaces = [n.name for n in self.client.namespaces()] if self.client is not None else []
        for net in self.list():
            if (net.name in conflist.PSEUDO_NETWORKS or net.name == conflist.DEFAULT_NETWORK
                    or os.path.dirname(net.path) != own):
                continue
            others = [Networks(self.client.with_namespace(ns), self.data_root) for ns in namespaces]
            if self.users(net.name) or any(o.users(net.name) for o in others):
                continue
            try:
                conflist.remove(self.data_root, net.name)
            except (NetworkError, OSError):
                continue
            removed.append(net.name)
        return removed

    def remove(self, name):
        if name in conflist.PSEUDO_NETWORKS or name == conflist.DEFAULT_NETWORK:
            raise NetworkError(f"network {name} is built in and cannot be removed")
        conflist.find(self.data_root, name)
        users = self.users(name)
        if users:
            raise NetworkError(f"network {name} is in use by container(s) {', '.join(users)}; remove them first")
        conflist.remove(self.data_root, name)

"""`corral network ls|create|rm|inspect`: CNI networks (corral's own under
<data-root>/networks, and those in /etc/cni/net.d), plus the built-in `host` and `none`."""

import json

from corral.cli.errors import CLIError


def configure(p):
    sub = p.add_subparsers(dest="action", metavar="COMMAND")
    sub.required = True
    ls = sub.add_parser("ls", aliases=["list"], help="list networks")
    ls.add_argument("-q", "--quiet", action="store_true", help="only names")
    create = sub.add_parser("create", help="create a bridge network")
    create.add_argument("name")
    create.add_argument("--subnet", help="IPv4 subnet in CIDR form (default: a free /24 in 10.4.0.0/16)")
    create.add_argument("--gateway", help="the gateway's address (default: the subnet's first)")
    create.add_argument("-d", "--driver", default="bridge", help="only bridge")
    create.add_argument("--label", action="append", default=[], help="set a label KEY=VALUE")
    rm = sub.add_parser("rm", aliases=["remove"], help="remove networks no container uses")
    rm.add_argument("names", nargs="+", metavar="NAME")
    inspect = sub.add_parser("inspect", help="show networks as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME")


def run(opts, env):
    action = {"list": "ls", "remove": "rm"}.get(opts.action, opts.action)
    return {"ls": _ls, "create": _create, "rm": _rm, "inspect": _inspect}[action](opts, env)


def _errors():
    from corral.cni.errors import NetworkError
    return NetworkError


def _ls(opts, env):
    from corral.cni import conflist
    rows = [("NETWORK ID", "NAME", "DRIVER", "SUBNET")]
    for conf, _ in conflist.list_all(env.data_root):
        rows.append((_id(conf)[:12], conf["name"], _driver(conf),
                     ",".join(str(s) for s in conflist.subnets(conf))))
    rows += [("", "host", "host", ""), ("", "none", "null", "")]
    if opts.quiet:
        for r in rows[1:]:
            print(r[1])
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[3])
    return 0


def _id(conf):
    import hashlib
    return (conf.get("corral") or {}).get("id") or hashlib.sha256(conf["name"].encode()).hexdigest()


def _driver(conf):
    return conf["plugins"][0]["type"]


def _create(opts, env):
    from corral.cni import conflist
    labels = {}
    for item in opts.label:
        k, eq, v = item.partition("=")
        if not k:
            raise CLIError(f"invalid label {item!r}: want KEY=VALUE")
        labels[k] = v
    try:
        conf = conflist.create(env.data_root, opts.name, subnet=opts.subnet, gateway=opts.gateway,
                               driver=opts.driver, labels=labels)
    except _errors() as e:
        raise CLIError(str(e)) from None
    print(_id(conf))
    return 0


def _users(env, name):
    """Names (or ids) of containers whose record says they use network `name`."""
    from corral.cni import cache
    try:
        records = env.client().list_containers()
    except Exception as e:
        raise CLIError(f"cannot check whether network {name} is in use: corrald did not answer "
                       f"({getattr(e, 'message', e)})") from None
    users = []
    for c in records:
        try:
            nets = json.loads(c.labels.get("corral/networks") or "[]")
        except ValueError:
            nets = []
        if name in nets:
            users.append(c.labels.get("corral/name") or c.id[:12])
    attached = {e["containerId"] for e in cache.entries(env.data_root) if e.get("networkName") == name}
    known = {c.id for c in records}
    users += [cid[:12] for cid in sorted(attached - known)]
    return users


def _rm(opts, env):
    from corral.cni import conflist
    status = 0
    for name in opts.names:
        try:
            if name in conflist.PSEUDO_NETWORKS or name == conflist.DEFAULT_NETWORK:
                raise CLIError(f"network {name} is built in and cannot be removed")
            conflist.find(env.data_root, name)
            users = _users(env, name)
            if users:
                raise CLIError(f"network {name} is in use by container(s) {', '.join(users)}; remove them first")
            conflist.remove(env.data_root, name)
            print(name)
        except (CLIError, _errors()) as e:
            if len(opts.names) == 1:
                raise CLIError(str(e)) from None
            import sys
            print(f"corral: {e}", file=sys.stderr)
            status = 1
    return status


def _inspect(opts, env):
    from corral.cni import cache, conflist, plugins
    out = []
    for name in opts.names:
        try:
            conf = conflist.find(env.data_root, name)
        except _errors() as e:
            raise CLIError(str(e)) from None
        meta = conf.get("corral") or {}
        ipam, ipam_type = [], ""
        for p in conf["plugins"]:
            ipam_type = ipam_type or (p.get("ipam") or {}).get("type", "")
            for rs in (p.get("ipam") or {}).get("ranges") or []:
                ipam += [{"Subnet": r.get("subnet"), "Gateway": r.get("gateway")} for r in rs]
        containers = {}
        for e in cache.entries(env.data_root):
            if e.get("networkName") == name and e.get("result"):
                containers[e["containerId"]] = {"Name": e.get("name") or "", "Interface": e["ifName"],
                                                "IPv4Address": ",".join(plugins.ips(e["result"]))}
        out.append({"Name": conf["name"], "Id": _id(conf), "Created": meta.get("created", ""),
                    "Driver": _driver(conf), "IPAM": {"Driver": ipam_type, "Config": ipam},
                    "Labels": meta.get("labels") or {}, "Containers": containers, "CNI": conf})
    print(json.dumps(out, indent=2))
    return 0

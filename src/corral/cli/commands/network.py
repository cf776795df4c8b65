"""`corral network ls|create|rm|inspect`: CNI networks (corral's own under
<data-root>/networks, and those in /etc/cni/net.d), plus the built-in `host` and `none`."""

import json
import sys

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


def _networks(env, with_client=False):
    from corral.cni.api import Networks
    return Networks(env.client() if with_client else None, data_root=env.data_root)


def _ls(opts, env):
    rows = [("NETWORK ID", "NAME", "DRIVER", "SUBNET")]
    for net in _networks(env).list():
        rows.append((net.id[:12], net.name, net.driver, ",".join(net.subnets)))
    rows += [("", "host", "host", ""), ("", "none", "null", "")]
    if opts.quiet:
        for r in rows[1:]:
            print(r[1])
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("   ".join(c.ljust(w) for c, w in zip(r, widths)) + "   " + r[3])
    return 0


def _create(opts, env):
    labels = {}
    for item in opts.label:
        k, eq, v = item.partition("=")
        if not k:
            raise CLIError(f"invalid label {item!r}: want KEY=VALUE")
        labels[k] = v
    try:
        net = _networks(env).create(opts.name, subnet=opts.subnet, gateway=opts.gateway, driver=opts.driver,
                                    labels=labels)
    except _errors() as e:
        raise CLIError(str(e)) from None
    print(net.id)
    return 0


def _rm(opts, env):
    from corral.client import ClientError
    nets = _networks(env, with_client=True)
    status = 0
    for name in opts.names:
        try:
            nets.remove(name)
            print(name)
        except (_errors(), ClientError) as e:
            msg = str(e)
            if isinstance(e, ClientError):
                msg = f"cannot check whether network {name} is in use: corrald did not answer ({e.message})"
            if len(opts.names) == 1:
                raise CLIError(msg) from None
            print(f"corral: {msg}", file=sys.stderr)
            status = 1
    return status


def _inspect(opts, env):
    nets = _networks(env)
    out = []
    for name in opts.names:
        try:
            out.append(nets.get(name).attrs())
        except _errors() as e:
            raise CLIError(str(e)) from None
    print(json.dumps(out, indent=2))
    return 0

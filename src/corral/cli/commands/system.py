"""`corral system info` (daemon, storage, counts) and `corral system prune [-f] [--volumes]`
(remove stopped containers, their dangling per-container files and the user networks no
container uses; with --volumes also the unused volumes)."""


def configure(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("info", help="show the daemon's and this system's facts")
    pr = sub.add_parser("prune", help="remove stopped containers and unused networks (and volumes)")
    pr.add_argument("-f", "--force", action="store_true", help="do not ask")
    pr.add_argument("--volumes", action="store_true", help="also remove the volumes no container uses")


def run(opts, env):
    return info(env) if opts.action == "info" else prune(opts, env)


def info(env):
    import os
    import platform
    client = env.client()
    v = client.version()
    cs = client.containers.list(all=True)
    states = [c.status for c in cs]
    print(f"Server Version: {v['version']}")
    print(f"Address: {env.address}")
    print(f"Namespace: {env.namespace}")
    print(f"Containers: {len(cs)}")
    print(f" Running: {states.count('running')}")
    print(f" Paused: {states.count('paused')}")
    print(f" Stopped: {states.count('exited') + states.count('created')}")
    print(f"Images: {len(client.images())}")
    print("Storage Driver: overlayfs")
    print("Default Runtime: io.containerd.corral.v2")
    print(f"Cgroup Version: {'2' if os.path.exists('/sys/fs/cgroup/cgroup.controllers') else '1'}")
    print(f"Kernel Version: {platform.release()}")
    print(f"Architecture: {platform.machine()}")
    print(f"CPUs: {os.cpu_count()}")
    print(f"Total Memory: {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')}")
    print(f"Data Root: {env.data_root}")
    return 0


def prune(opts, env):
    import os
    import shutil
    import sys
    from corral.cli.errors import CLIError
    what = "every stopped container and every network no container uses" + (
        ", and every volume no container uses" if opts.volumes else "")
    if not opts.force:
        if not sys.stdin.isatty():
            raise CLIError(f"system prune removes {what}; confirm with -f")
        answer = input(f"This removes {what}. Continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    client = env.client()
    removed = 0
    live = set()
    for c in client.containers.list(all=True):
        if c.status in ("exited", "created"):
            c.remove()
            print(c.id)
            removed += 1
        else:
            live.add(c.id)
    # per-container files whose container record is gone
    base = os.path.join(env.data_root, "containers", env.namespace)
    known = {r.id for r in client.containers()}
    if os.path.isdir(base):
        for d in os.listdir(base):
            if d not in known:
                shutil.rmtree(os.path.join(base, d), ignore_errors=True)
    networks = client.networks.prune()
    for name in networks:
        print(f"network {name}")
    volumes = client.volumes.prune() if opts.volumes else []
    for name in volumes:
        print(f"volume {name}")
    print(f"Removed {removed} container(s), {len(networks)} network(s), {len(volumes)} volume(s)")
    return 0

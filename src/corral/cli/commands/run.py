"""`corral run [flags] IMAGE [COMMAND [ARG...]]`: create a container and start it; attached
(the default) it prints the output and exits with the container's status."""

from corral.cli.errors import CLIError

QUICK = True  # plain command lines are parsed without argparse (corral.oci.quickargs)


def configure(p, detach=True):
    """The container flags `run` and `create` share (create passes detach=False)."""
    if detach:
        p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the id")
        p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("--name", help="the container's name (unique in the namespace)")
    p.add_argument("-e", "--env", action="append", default=[], help="set KEY=VALUE (or KEY from the host)")
    p.add_argument("--env-file", action="append", default=[], help="read KEY=VALUE lines from a file")
    p.add_argument("-v", "--volume", action="append", default=[], help="SRC:DST[:ro] (SRC a host path or volume name)")
    p.add_argument("--mount", action="append", default=[], help="type=bind|volume|tmpfs,source=,target=[,readonly]")
    p.add_argument("-p", "--publish", action="append", default=[], help="[ip:]host:container[/tcp|udp]")
    p.add_argument("-w", "--workdir", default="", help="working directory in the container")
    p.add_argument("-u", "--user", default="", help="user[:group] or uid[:gid]")
    p.add_argument("--entrypoint", default=None, help="override the image's entrypoint")
    p.add_argument("--network", "--net", default=None, help="bridge (default), host, none or a network name")
    p.add_argument("--hostname", default="", help="the container's hostname")
    p.add_argument("--memory", "-m", default=None, help="memory limit (e.g. 512m, 1g)")
    p.add_argument("--cpus", default=None, help="number of CPUs (e.g. 0.5)")
    p.add_argument("--pids-limit", default=None, help="maximum number of processes")
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("--cap-add", action="append", default=[], help="add a capability (or ALL)")
    p.add_argument("--cap-drop", action="append", default=[], help="drop a capability (or ALL)")
    p.add_argument("--privileged", action="store_true", help="all capabilities the host grants, its devices, no seccomp or masked paths")
    p.add_argument("--security-opt", action="append", default=[], help="seccomp=unconfined (docker's)")
    p.add_argument("--restart", default="no", help="no, always, on-failure[:N] or unless-stopped")
    p.add_argument("--label", "-l", action="append", default=[], help="set a label KEY=VALUE")
    p.add_argument("--log-opt", action="append", default=[], help="max-size=SIZE or max-file=N")
    p.add_argument("image", help="the image (e.g. busybox)")
    p.add_argument("command", nargs="...", help="the command and its arguments (default: the image's)")


def parse_ports(values):
    if not values:
        return []
    from corral.cni.ports import parse_publish
    try:
        return [parse_publish(v) for v in values]
    except ValueError as e:  # corral.cni's NetworkError
        raise CLIError(str(e)) from None


def create_kwargs(opts):
    """run/create flags -> keyword arguments of client.containers.create."""
    from corral.containers import spec as S
    try:
        env = []
        for f in opts.env_file:
            env += S.parse_env_file(f)
        env = S.expand_env(env + opts.env)
        mounts = [S.parse_volume(v) for v in opts.volume] + [S.parse_mount(m) for m in opts.mount]
        labels = {}
        for item in opts.label:
            k, _, v = item.partition("=")
            if not k:
                raise S.SpecError(f"invalid label {item!r}: want KEY=VALUE")
            if k.startswith(("corral/", "containerd.io/")):
                raise S.SpecError(f"invalid label {item!r}: the prefixes corral/ and containerd.io/ are reserved")
            labels[k] = v
        log_opts = {}
        for item in opts.log_opt:
            k, eq, v = item.partition("=")
            if not eq:
                raise S.SpecError(f"invalid --log-opt {item!r}: want KEY=VALUE")
            log_opts[k] = v
        seccomp = True
        for item in opts.security_opt:
            if item in ("seccomp=unconfined", "seccomp:unconfined"):
                seccomp = False
            else:
                raise S.SpecError(f"unsupported --security-opt {item!r}: corral knows seccomp=unconfined")
        network = opts.network or "bridge"
        o = S.Options(
            command=list(opts.command) or None, entrypoint=opts.entrypoint, env=env, workdir=opts.workdir,
            user=opts.user, hostname=opts.hostname, tty=opts.tty, stdin_open=opts.interactive,
            memory=S.parse_memory(opts.memory) if opts.memory is not None else 0,
            cpus=S.parse_cpus(opts.cpus) if opts.cpus is not None else 0.0,
            pids_limit=S.parse_pids_limit(opts.pids_limit) if opts.pids_limit is not None else 0,
            read_only=opts.read_only, seccomp=seccomp, cap_add=opts.cap_add, cap_drop=opts.cap_drop, privileged=opts.privileged,
            mounts=mounts, network=network, ports=parse_ports(opts.publish), labels=labels)
    except S.SpecError as e:
        raise CLIError(str(e)) from None
    return {"options": o, "name": opts.name, "restart": opts.restart, "log_opts": log_opts}


def create(opts, env):
    from corral.containers import spec as S
    from corral.containers.api import ContainerError
    from corral.containers.image import ImageNotFound
    kw = create_kwargs(opts)
    client = env.client()
    try:
        return client.containers.create(opts.image, **kw)
    except (ImageNotFound, ContainerError, S.SpecError) as e:
        raise CLIError(str(e)) from None


def run(opts, env):
    from corral.containers.api import ContainerError, check_restart
    from corral.containers.spec import SpecError
    try:
        check_restart(opts.restart)
    except SpecError as e:
        raise CLIError(str(e)) from None
    if opts.rm and opts.restart not in ("no", ""):
        raise CLIError("--rm and --restart cannot be used together")
    c = create(opts, env)
    if opts.detach:
        try:
            c.start()
        except BaseException as e:
            c.remove(force=True)
            if isinstance(e, ContainerError):
                raise CLIError(str(e)) from None
            if isinstance(e, Exception):
                from corral.cli.attach import start_error
                raise start_error(e) from None
            raise
        if opts.rm:
            from corral.containers.autoremove import spawn
            spawn(env.address, env.namespace, env.data_root, c.id)
        print(c.id)
        return 0
    from corral.cli.attach import run_attached
    return run_attached(c, stdin=opts.interactive, tty=opts.tty, remove=opts.rm)

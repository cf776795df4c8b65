"""`corral top CONTAINER`: the container's processes (PID and command line, host PIDs)."""


def configure(p):
    p.add_argument("container")


def run(opts, env):
    from corral.cli.commands._common import get
    from corral.cli.errors import CLIError
    c = get(env, opts.container)
    if c.status != "running":
        raise CLIError(f"container {c.name} is not running")
    print(f"{'PID':<10}CMD")
    for pid, cmd in c.top():
        print(f"{pid:<10}{cmd}")
    return 0

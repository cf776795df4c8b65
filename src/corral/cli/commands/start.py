"""`corral start [-a] [-i] CONTAINER...`: start created or exited containers."""


def configure(p):
    p.add_argument("-a", "--attach", action="store_true", help="attach to the output and exit with its status")
    p.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    p.add_argument("containers", nargs="+")


def run(opts, env):
    from corral.cli.commands._common import each, get
    from corral.cli.errors import CLIError
    if opts.attach or opts.interactive:
        if len(opts.containers) != 1:
            raise CLIError("start -a attaches to one container only")
        from corral.cli.attach import run_attached
        from corral.containers import labels as L
        c = get(env, opts.containers[0])
        if c.status in ("running", "paused"):
            raise CLIError(f"container {c.name} is already running")
        return run_attached(c, stdin=opts.interactive, tty=c.labels.get(L.TTY) == "1")

    def start(c):
        try:
            c.start()
        except Exception as e:
            from corral.cli.attach import start_error
            raise start_error(e) from None
    return each(env, opts.containers, start)

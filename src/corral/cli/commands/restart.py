"""`corral restart [-t SECONDS] CONTAINER...`: stop (as `stop`), then start again."""


def configure(p):
    p.add_argument("-t", "--time", type=int, default=10, help="seconds to wait before SIGKILL (default 10)")
    p.add_argument("containers", nargs="+")


def run(opts, env):
    from corral.cli.commands._common import each

    def restart(c):
        c.stop(timeout=opts.time)
        try:
            c.start()
        except Exception as e:
            from corral.cli.attach import start_error
            raise start_error(e) from None
    return each(env, opts.containers, restart)

"""`corral stop [-t SECONDS] CONTAINER...`: SIGTERM (or the image's stop signal), then
SIGKILL after the timeout (default 10 s)."""


def configure(p):
    p.add_argument("-t", "--time", type=int, default=10, help="seconds to wait before SIGKILL (default 10)")
    p.add_argument("containers", nargs="+")


def run(opts, env):
    from corral.cli.commands._common import each
    return each(env, opts.containers, lambda c: c.stop(timeout=opts.time))

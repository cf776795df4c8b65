"""`corral wait CONTAINER...`: block until each container exits; print its exit status."""


def configure(p):
    p.add_argument("containers", nargs="+")


def run(opts, env):
    from corral.cli.commands._common import each
    return each(env, opts.containers, lambda c: print(c.wait()), echo=False)

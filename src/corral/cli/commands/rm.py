"""`corral rm [-f] CONTAINER...`: remove containers (their task, record, snapshot and files;
-f kills a running one first)."""


def configure(p):
    p.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    p.add_argument("containers", nargs="+")


def run(opts, env):
    from corral.cli.commands._common import each
    return each(env, opts.containers, lambda c: c.remove(force=opts.force))

"""`corral create [flags] IMAGE [COMMAND [ARG...]]`: make a container without starting it;
prints its id."""

from corral.cli.commands import run as run_cmd


def configure(p):
    run_cmd.configure(p, detach=False)


def run(opts, env):
    c = run_cmd.create(opts, env)
    print(c.id)
    return 0

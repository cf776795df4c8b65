"""`corral kill [-s SIGNAL] CONTAINER...`: send a signal (default SIGKILL)."""


def configure(p):
    p.add_argument("-s", "--signal", default="SIGKILL", help="signal name or number (default SIGKILL)")
    p.add_argument("containers", nargs="+")


def run(opts, env):
    from corral.cli.commands._common import each
    from corral.cli.errors import CLIError
    from corral.containers.api import ContainerError, parse_signal
    try:
        sig = parse_signal(opts.signal)
    except ContainerError as e:
        raise CLIError(str(e)) from None
    return each(env, opts.containers, lambda c: c.kill(sig))

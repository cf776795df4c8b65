"""`corral exec [-i] [-t] [-d] [-e K=V] [-w DIR] [-u USER] CONTAINER COMMAND [ARG...]`: run a
process in a running container; exits with its status."""


def configure(p):
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("-d", "--detach", action="store_true", help="start it in the background")
    p.add_argument("-e", "--env", action="append", default=[], help="set KEY=VALUE")
    p.add_argument("-w", "--workdir", default="", help="working directory")
    p.add_argument("-u", "--user", default="", help="user[:group] or uid[:gid]")
    p.add_argument("container")
    p.add_argument("command", nargs="...")


def run(opts, env):
    from corral.cli.attach import exec_attached, start_error
    from corral.cli.commands._common import get
    from corral.cli.errors import CLIError
    from corral.containers.api import ContainerError
    from corral.containers.spec import SpecError
    if not opts.command:
        raise CLIError("exec needs a command; see `corral exec --help`")
    c = get(env, opts.container)

    def start(io=None):
        try:
            return c.exec(opts.command, env=opts.env, workdir=opts.workdir, user=opts.user, tty=opts.tty, io=io)
        except (ContainerError, SpecError) as e:
            raise CLIError(str(e)) from None

    if opts.detach:
        exec_id = start()
        try:
            c.client.start_task(c.id, exec_id)
        except Exception as e:
            raise start_error(e) from None
        return 0
    from corral.containers.stdio import FifoIO
    io = FifoIO(c.id, stdin=opts.interactive, terminal=opts.tty)
    try:
        return exec_attached(c, io, opts.interactive, opts.tty, lambda: start(io))
    finally:
        io.close()

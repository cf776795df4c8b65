"""`corral login [-u USER] [-p PASSWORD | --password-stdin] [--plain-http] [SERVER]`: check the
credentials against the registry (through corrald) and store them in ~/.corral/auth.json
(0600). SERVER defaults to docker.io."""

import sys


def configure(p):
    from corral.cli.commands._images import registry_flags
    p.add_argument("-u", "--username", default="")
    p.add_argument("-p", "--password", default="")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    registry_flags(p)
    p.add_argument("server", nargs="?", default="docker.io")


def run(opts, env):
    from corral.cli.errors import CLIError
    from corral.client import ClientError
    from corral.client_images import normalize_host
    if opts.password and opts.password_stdin:
        raise CLIError("login: --password and --password-stdin are exclusive")
    try:
        host = normalize_host(opts.server)
    except ValueError as e:
        raise CLIError(f"login: {e}") from None
    user, password = opts.username, opts.password
    if opts.password_stdin:
        if not user:
            raise CLIError("login: --password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    if not user:
        if not sys.stdin.isatty():
            raise CLIError("login: give --username (stdin is not a terminal)")
        user = input("Username: ").strip()
    if not password:
        if not sys.stdin.isatty():
            raise CLIError("login: give --password or --password-stdin (stdin is not a terminal)")
        import getpass
        password = getpass.getpass("Password: ")
    if not user or not password:
        raise CLIError("login: a user name and a password are needed")
    try:
        env.client().login(host, user, password, plain_http=opts.plain_http, insecure=opts.insecure_registry)
    except ClientError as e:
        if e.code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise CLIError(f"login to {host} failed: unauthorized: incorrect username or password") from None
        raise
    except ValueError as e:
        raise CLIError(f"login: {e}") from None
    print("Login Succeeded")
    return 0

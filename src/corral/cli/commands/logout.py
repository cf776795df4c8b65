"""`corral logout [SERVER]`: forget the stored credentials of a registry (default docker.io)."""


def configure(p):
    p.add_argument("server", nargs="?", default="docker.io")


def run(opts, env):
    from corral.cli.errors import CLIError
    from corral.client_images import normalize_host
    from corral.remotes.auth import remove_credentials
    try:
        host = normalize_host(opts.server)
        had = remove_credentials(host)
    except ValueError as e:
        raise CLIError(f"logout: {e}") from None
    print(f"Removing login credentials for {host}" if had else f"Not logged in to {host}")
    return 0

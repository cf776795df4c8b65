"""`corral version`: the client's version and, if it answers, the daemon's."""

import sys


def configure(p):
    pass


def run(opts, env):
    from corral import __version__
    print("Client:")
    print(f" Version:   {__version__}")
    print("Server:")
    try:
        v = env.client().version()
    except Exception as e:  # the daemon not answering is information, not a crash
        from corral.cli.main import connect_error
        print(f"corral: {connect_error(e, env) or getattr(e, 'message', e)}", file=sys.stderr)
        return 1
    print(f" Version:   {v['version']}")
    print(f" Revision:  {v['revision']}")
    return 0

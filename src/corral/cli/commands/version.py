"""`corral version`: the client's version and, if it answers, the daemon's."""


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
        print(f" (corrald at {env.address} did not answer: {getattr(e, 'message', e)})")
        return 1
    print(f" Version:   {v['version']}")
    print(f" Revision:  {v['revision']}")
    return 0

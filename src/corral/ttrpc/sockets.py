"""The unix sockets ttrpc servers listen on (the shim's, its zygote's): private to root."""

import os


def listen_private(sock, path, backlog):
    """Bind `sock` to `path`, created mode 0600 (through the umask, so it is never more open
    for a moment), and listen."""
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(backlog)
    return sock

"""The console-socket protocol: the container's pty master travels over a unix socket with
SCM_RIGHTS (one fd, the message data being the pty's name), as runc and containerd do it."""

import _socket  # the C module: `socket` costs ~10 ms of enum set-up
import fcntl
import os
import struct

from corral.oci.errors import RuntimeFailure

TIOCSWINSZ = 0x5414
TIOCSCTTY = 0x540E


def connect(path):
    """Connect to the --console-socket path (in the runtime's namespaces, before fork)."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise RuntimeFailure(f"cannot connect to the console socket {path}: {e.strerror}") from None
    return s


def open_pty():
    """A new pty from the container's /dev/ptmx: (master fd, slave fd, slave name)."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise RuntimeFailure(f"cannot open /dev/ptmx in the container for the terminal: {e.strerror}; "
                             "mount devpts at /dev/pts") from None
    try:
        fcntl.ioctl(master, 0x40045431, struct.pack("i", 0))  # TIOCSPTLCK: unlock
        n = struct.unpack("I", fcntl.ioctl(master, 0x80045430, b"\0" * 4))[0]  # TIOCGPTN
        name = f"/dev/pts/{n}"
        slave = os.open(name, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        os.close(master)
        raise RuntimeFailure(f"setting up the container's terminal failed: {e.strerror}") from None
    return master, slave, name


def set_size(fd, size):
    if not size:
        return
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))


def send_fd(sock, fd, name):
    try:
        sock.sendmsg([name.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])
    except OSError as e:
        raise RuntimeFailure(f"sending the terminal to the console socket failed: {e.strerror}") from None


def recv_fd(sock):
    """Receive one fd sent with send_fd: (fd, name)."""
    size = struct.calcsize("i")
    fds = []
    msg, anc, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(size))
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            whole = len(data) - len(data) % size
            fds.extend(struct.unpack(f"{whole // size}i", data[:whole]))
    if not fds:
        raise RuntimeFailure("no terminal fd arrived on the console socket")
    return fds[0], msg.decode(errors="replace")


def make_controlling(slave):
    """In the container process: new session, the pty slave as stdio and controlling terminal."""
    os.setsid()
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)

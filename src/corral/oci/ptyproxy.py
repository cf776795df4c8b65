"""`run` with a terminal and no --console-socket: copy between our stdio and the pty master
until the container's init exits (we are its subreaper)."""

import os
import select
import signal


def proxy(master, pid):
    """Returns init's wait status."""
    stdin_tty = os.isatty(0)
    saved = None
    if stdin_tty:
        import termios
        import tty
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_size(master)
        signal.signal(signal.SIGWINCH, lambda *_: _copy_size(master))
    status = None
    inputs = [master, 0]
    try:
        while status is None or master in inputs:
            if status is None:
                done, st = os.waitpid(-1, os.WNOHANG)
                if done == pid:
                    status = st
                    # drain what the container printed before it exited
            try:
                ready, _, _ = select.select(inputs, [], [], 0.05 if status is None else 0.0)
            except InterruptedError:
                continue
            if status is not None and not ready:
                break
            for fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    inputs.remove(fd)
                    continue
                _write_all(1 if fd == master else master, data)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
    return status


def _write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except OSError:
            return
        data = data[n:]


def _copy_size(master):
    import fcntl
    import termios
    try:
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass

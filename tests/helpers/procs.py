"""Processes as the tests watch them from /proc."""


def process_ended(pid):
    """Gone, or a zombie its parent (or init) has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True

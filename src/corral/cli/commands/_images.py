"""What the image commands share: registry flags, reference parsing with one-line errors, and
showing a transfer's progress (a rich bar per layer on a terminal, plain lines otherwise)."""

import sys

from corral.cli.errors import CLIError


def registry_flags(p):
    p.add_argument("--plain-http", action="store_true", help="talk plain http to the registry (no TLS)")
    p.add_argument("--insecure-registry", action="store_true",
                   help="do not verify the registry's TLS certificate")


def reference(name):
    from corral.images.reference import parse
    try:
        return parse(name)
    except ValueError as e:
        raise CLIError(str(e)) from None


def human(n):
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}"


def short(digest):
    return digest.split(":", 1)[-1][:12]


ENDED = {"downloaded": "Download complete", "exists": "Already exists", "uploaded": "Pushed",
         "mounted": "Mounted", "unpacked": "Pull complete"}


class PlainProgress:
    """One line per layer status change (for logs and pipes)."""

    def __init__(self, out=sys.stdout):
        self.out = out
        self.seen = {}

    def __call__(self, msg):
        if msg.kind != "layer":         # docker shows layers only
            return
        if self.seen.get(msg.digest) == msg.status:
            return
        self.seen[msg.digest] = msg.status
        text = ENDED.get(msg.status)
        if text is None:
            text = {"downloading": "Downloading", "uploading": "Pushing"}.get(msg.status, msg.status)
            text += f" ({human(msg.total)})" if msg.total else ""
        print(f"{short(msg.digest)}: {text}", file=self.out, flush=True)

    def close(self):
        pass


class BarProgress:
    """A rich progress bar per layer (manifests and configs are too small to show)."""

    def __init__(self):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
        self.progress = Progress(TextColumn("{task.fields[name]}"), TextColumn("{task.fields[state]:<18}"),
                                 BarColumn(), DownloadColumn(), transient=False)
        self.tasks = {}
        self.progress.start()

    def __call__(self, msg):
        if msg.kind != "layer":
            return
        t = self.tasks.get(msg.digest)
        if t is None:
            t = self.tasks[msg.digest] = self.progress.add_task("", total=msg.total or None,
                                                                 name=short(msg.digest), state="Waiting")
        state = ENDED.get(msg.status) or {"downloading": "Downloading", "uploading": "Pushing"}.get(
            msg.status, msg.status)
        done = msg.total if msg.status in ENDED else msg.offset
        self.progress.update(t, completed=done, state=state)

    def close(self):
        self.progress.stop()


def progress_display(quiet):
    if quiet:
        return None
    if sys.stdout.isatty():
        return BarProgress()
    return PlainProgress()

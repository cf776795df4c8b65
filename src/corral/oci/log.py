"""Runtime logging as runc does it: text or JSON lines to --log (default stderr).

containerd's shim reads the last JSON line of the log file to report why a command failed,
so errors must be written here as {"level": "error", "msg": ..., "time": ...}.
"""

from corral.oci import jsonfast as json  # json.loads/dumps without importing json (re)
import sys
import time

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    def __init__(self, path=None, fmt="text", debug=False):
        self.path = path
        self.fmt = fmt
        self.threshold = _LEVELS["debug" if debug else "info"]

    def _write(self, level, msg):
        if _LEVELS[level] < self.threshold:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "%09dZ" % int((now % 1) * 1e9)
        stamp = stamp[:19] + "." + stamp[19:]
        if self.fmt == "json":
            line = json.dumps({"level": level, "msg": msg, "time": stamp})
        else:
            line = f'time="{stamp}" level={level} msg="{msg}"'
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(line + "\n")
                return
            except OSError:
                pass
        if self.fmt == "json" or self.path:
            sys.stderr.write(line + "\n")

    def debug(self, msg):
        self._write("debug", msg)

    def info(self, msg):
        self._write("info", msg)

    def warning(self, msg):
        self._write("warning", msg)

    def error(self, msg):
        self._write("error", msg)

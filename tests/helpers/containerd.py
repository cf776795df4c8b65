"""A real containerd (Debian's `containerd` 1.6) for interop tests, with its own temp dirs.

Started on a private socket with the CRI plugin off, stopped by PID, and its directories,
mounts and shims cleaned up afterwards.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  level = "warn"
"""


class Containerd:
    def __init__(self, env=None):
        """env: variables added to containerd's environment (its shims inherit them)."""
        self.env = dict(os.environ, **env) if env else None
        self.dir = tempfile.mkdtemp(prefix="corral-ctrd-")
        self.sock = os.path.join(self.dir, "c.sock")
        self.config = os.path.join(self.dir, "config.toml")
        self.proc = None
        self.log = None

    def start(self, timeout=20):
        with open(self.config, "w") as f:
            f.write(CONFIG.format(root=os.path.join(self.dir, "root"),
                                  state=os.path.join(self.dir, "state"), sock=self.sock))
        self.log = open(os.path.join(self.dir, "containerd.log"), "ab")
        self.proc = subprocess.Popen(["containerd", "--config", self.config],
                                     stdout=self.log, stderr=self.log, start_new_session=True, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.sock) and self.ctr("version", check=False).returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("containerd did not start:\n" + self.log_text())

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "containerd.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def ctr(self, *args, check=True, timeout=60, namespace="default", input=None):
        cmd = ["ctr", "--address", self.sock, "--namespace", namespace, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr}")
        return res

    def stop(self):
        """Stop the daemon (not its shims: containers outlive it)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self, namespace="default"):
        """Kill every task, delete every container, stop the daemon, unmount and remove dirs."""
        if self.proc and self.proc.poll() is None:
            for ns in self.ctr("namespaces", "ls", "-q", check=False).stdout.split() or [namespace]:
                for cid in self.ctr("containers", "ls", "-q", check=False, namespace=ns).stdout.split():
                    self.ctr("tasks", "kill", "-s", "SIGKILL", cid, check=False, namespace=ns)
                    for _ in range(50):
                        if self.ctr("tasks", "delete", cid, check=False, namespace=ns).returncode != 0:
                            if "not found" in self.ctr("tasks", "ls", check=False, namespace=ns).stdout:
                                break
                        if cid not in self.ctr("tasks", "ls", "-q", check=False, namespace=ns).stdout.split():
                            break
                        time.sleep(0.1)
                    self.ctr("containers", "delete", cid, check=False, namespace=ns)
        self.stop()
        if self.log:
            self.log.close()
        unmount_below(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def unmount_below(path):
    """Lazily unmount every mount point at or below `path` (deepest first)."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for mp in sorted((p for p in points if p == path or p.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def runtime_config(directory, binary, name="runtime.toml"):
    """A runtime options file for `ctr run --runtime-config-path` naming the runc-compatible
    binary that corral's shim drives (BinaryName); its path."""
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(f'BinaryName = "{binary}"\n')
    return path


def import_busybox(ctrd, name="docker.io/library/busybox:latest", namespace="default"):
    from corral.busybox import make_oci_archive

    archive = os.path.join(ctrd.dir, "busybox.tar")
    if not os.path.exists(archive):
        make_oci_archive(archive, name)
    ctrd.ctr("images", "import", archive, namespace=namespace)
    return name

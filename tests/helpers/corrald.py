"""corrald for tests: its own temp root, state and socket; stopped by PID; directories and
mounts removed afterwards."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Corrald:
    def __init__(self, config_text=None):
        self.dir = tempfile.mkdtemp(prefix="corral-d-")
        self.sock = os.path.join(self.dir, "d.sock")
        self.root = os.path.join(self.dir, "root")
        self.state = os.path.join(self.dir, "state")
        self.config = os.path.join(self.dir, "config.toml")
        with open(self.config, "w") as f:
            f.write(config_text or "version = 2\n")
        self.proc = None

    def command(self):
        exe = os.path.join(os.path.dirname(sys.executable), "corrald")
        return [exe, "--config", self.config, "--root", self.root, "--state", self.state,
                "--address", self.sock, "--log-level", "debug"]

    def start(self, timeout=30):
        log = open(os.path.join(self.dir, "corrald.log"), "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.sock) and self.ctr("version", check=False).returncode == 0:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("corrald did not start:\n" + self.log_text())

    def log_text(self):
        try:
            with open(os.path.join(self.dir, "corrald.log"), errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def ctr(self, *args, check=True, timeout=60, namespace="default", input=None):
        cmd = ["ctr", "--address", self.sock, "--namespace", namespace, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr}\n--- corrald log:\n"
                                 + self.log_text())
        return res

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def cleanup(self):
        self.stop()
        # mounts left under our dirs (snapshots, task rootfs), deepest first
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for p in sorted((p for p in points if p.startswith(self.dir + "/")), reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

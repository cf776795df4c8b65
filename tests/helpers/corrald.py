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
    def __init__(self, config_text=None, log_level="debug"):
        self.log_level = log_level
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
                "--address", self.sock, "--log-level", self.log_level]

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

    def shim_pids(self):
        """PIDs of shims started for this daemon (their command line names our socket): exec'd
        shims, and the zygote with the servers it forked (they keep the zygote's command line)."""
        pids = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if self.sock.encode() in args and (b"containerd-shim" in args[0] or b"corral.shim.zygote" in args):
                pids.append(int(pid))
        return pids

    def delete_in_shim(self, cid, namespace="default"):
        """What a task delete does in the shim, without the daemon's part after it (as if the
        daemon died right after): the shim's Wait first, since a shim deletes only a process
        it has seen exit. Returns the task's bundle."""
        import asyncio

        from corral.api.containerd.runtime.v2.task import shim_pb2
        from corral.ttrpc.client import Client as TtrpcClient
        bundle = os.path.join(self.state, "io.containerd.runtime.v2.task", namespace, cid)
        with open(os.path.join(bundle, "address")) as f:
            address = f.read().strip()

        async def delete():
            c = await TtrpcClient.connect(address, timeout=5)
            md = {"containerd-namespace-ttrpc": namespace}
            try:
                await c.call("containerd.task.v2.Task", "Wait", shim_pb2.WaitRequest(id=cid),
                             shim_pb2.WaitResponse, timeout=10, metadata=md)
                await c.call("containerd.task.v2.Task", "Delete", shim_pb2.DeleteRequest(id=cid),
                             shim_pb2.DeleteResponse, timeout=10, metadata=md)
            finally:
                await c.close()
        asyncio.run(delete())
        return bundle

    def remove_tasks(self):
        """Kill and delete every task and container, in every namespace."""
        for ns in self.ctr("namespaces", "ls", "-q", check=False).stdout.split():
            for cid in self.ctr("tasks", "ls", "-q", check=False, namespace=ns).stdout.split():
                self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", cid, check=False, namespace=ns)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if self.ctr("tasks", "delete", cid, check=False, namespace=ns).returncode == 0:
                        break
                    time.sleep(0.1)
            for cid in self.ctr("containers", "ls", "-q", check=False, namespace=ns).stdout.split():
                self.ctr("containers", "rm", cid, check=False, namespace=ns)

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.remove_tasks()
        self.stop()
        # shims (and so their containers) of a daemon that could not clean up
        for pid in self.shim_pids():
            try:
                for child in open(f"/proc/{pid}/task/{pid}/children").read().split():
                    os.kill(int(child), signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # mounts left under our dirs (snapshots, task rootfs), deepest first
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for p in sorted((p for p in points if p.startswith(self.dir + "/")), reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

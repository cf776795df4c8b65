"""The OCI runtime driver: runc's command line, as containerd's runc shim calls it, for any
runc-compatible binary (corral-runc by default, runc, crun)."""

import json
import os

from corral.shim import inproc
from corral.shim.reaper import run_command
from corral.ttrpc.errors import UNKNOWN, TtrpcError


class RuntimeError_(TtrpcError):
    pass


class Runtime:
    def __init__(self, reaper, binary, root, bundle, systemd_cgroup=False):
        self.reaper = reaper
        self.binary = binary
        self.root = root
        self.bundle = bundle
        self.log = os.path.join(bundle, "log.json")
        self.systemd_cgroup = systemd_cgroup
        self.in_process = inproc.enabled(binary)

    def _argv(self, *args):
        argv = [self.binary, "--root", self.root, "--log", self.log, "--log-format", "json"]
        if self.systemd_cgroup:
            argv.append("--systemd-cgroup")
        return argv + list(args)

    def _last_error(self):
        """The last error message the runtime wrote to its JSON log."""
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 16384))
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("error", "fatal"):
                return entry.get("msg", "")
        return ""

    async def _run(self, verb, *args, stdin_data=None, stdio=None, capture=False):
        argv = self._argv(verb, *args)
        kw = {}
        if stdio is not None:
            kw = {"stdin": stdio[0], "stdout": stdio[1], "stderr": stdio[2]}
        try:
            status, out, err = await run_command(self.reaper, argv, stdin_data=stdin_data,
                                                 in_process=self.in_process, **kw)
        except (OSError, TimeoutError) as e:
            raise RuntimeError_(UNKNOWN, f"OCI runtime {verb} failed: {e}") from None
        if status != 0:
            msg = self._last_error() or (err or out or b"").decode(errors="replace").strip() \
                or f"{self.binary} exited with status {status}"
            raise RuntimeError_(UNKNOWN, f"OCI runtime {verb} failed: {msg}")
        return out if capture else None

    async def create(self, cid, pid_file, stdio, console_socket=None):
        args = ["--bundle", self.bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self._run("create", *args, cid, stdio=stdio)

    async def start(self, cid):
        await self._run("start", cid)

    async def exec(self, cid, process_file, pid_file, stdio, console_socket=None):
        args = ["--process", process_file, "--detach", "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        await self._run("exec", *args, cid, stdio=stdio)

    async def kill(self, cid, signal, all_=False):
        await self._run("kill", *(["--all"] if all_ else []), cid, str(signal))

    async def delete(self, cid, force=False):
        await self._run("delete", *(["--force"] if force else []), cid)

    async def pause(self, cid):
        await self._run("pause", cid)

    async def resume(self, cid):
        await self._run("resume", cid)

    async def update(self, cid, resources_json):
        await self._run("update", "--resources", "-", cid, stdin_data=resources_json)

    async def ps(self, cid):
        out = await self._run("ps", "--format", "json", cid, capture=True)
        return json.loads(out or b"[]") or []

    async def state(self, cid):
        return json.loads(await self._run("state", cid, capture=True))

    async def stats(self, cid):
        out = await self._run("events", "--stats", cid, capture=True)
        return json.loads(out)

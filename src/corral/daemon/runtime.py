"""The runtime v2 manager: bundles under the state directory, shims started by runtime name,
their Task API called over ttrpc, reconnection to live shims at start-up and clean-up of dead
ones.

Layout (as containerd's):  <state>/<ns>/<id>/        bundle: config.json, rootfs/, address,
                                                      log (fifo the shim writes its log to)
                           <root>/<ns>/<id>/          work dir (linked from the bundle as work)
"""

import logging
import os
import shutil
import subprocess
import sys
import threading

from corral.api.containerd.runtime.v2.task import shim_pb2
from corral.api.containerd.events import task_pb2 as task_events
from corral.daemon.shimlogs import ShimLogs
from corral.services.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

log = logging.getLogger("corrald")

SHIM_SERVICE = "containerd.task.v2.Task"
START_TIMEOUT = 30
CALL_TIMEOUT = 30
LOAD_TIMEOUT = 5  # per shim at start-up, so one stuck shim cannot stall the daemon


def shim_binary(runtime):
    """io.containerd.runc.v2 -> containerd-shim-runc-v2 (found on PATH), or an absolute path."""
    if os.path.isabs(runtime):
        return runtime
    parts = runtime.split(".")
    if len(parts) < 2 or not all(parts):
        raise InvalidArgument(f"runtime name {runtime!r} is invalid: expected io.containerd.<name>.<version>")
    name = f"containerd-shim-{parts[-2]}-{parts[-1]}"
    path = shutil.which(name)
    if path is None:
        raise FailedPrecondition(f"runtime {runtime}: shim binary {name} is not on PATH; install it or choose another runtime")
    return path


class Shim:
    """One connected shim serving one task (possibly among others)."""

    def __init__(self, ns, id, bundle, address, runtime, client, on_gone=None):
        self.ns = ns
        self.id = id
        self.bundle = bundle
        self.address = address
        self.runtime = runtime
        self.client = client
        self.on_gone = on_gone
        if on_gone is not None and hasattr(client, "on_lost"):
            client.on_lost = lambda: on_gone(self)

    def call(self, method, request, response_cls, timeout=CALL_TIMEOUT):
        return self.finish(self.start(method, request, timeout), response_cls)

    def start(self, method, request, timeout=CALL_TIMEOUT):
        """Send a call without waiting for it (calls to many shims then run concurrently)."""
        return self.client.start(SHIM_SERVICE, method, request.SerializeToString(), timeout)

    def finish(self, pending, response_cls, alive=None):
        try:
            data = self.client.finish(pending, alive)
        except Unavailable as e:
            if self.on_gone is None or not _is_gone(e):
                raise
            self.on_gone(self)
            raise NotFound(f"task {self.id}: its shim exited, the task was cleaned up ({e})") from None
        return response_cls.FromString(data)


def call_all(shims, method, requests, response_cls, timeout=CALL_TIMEOUT):
    """The same call to many shims at once: [(shim, response or the error it raised)]."""
    if not shims:
        return []
    first = shims[0].client
    if hasattr(first, "call_many"):
        answers = first.call_many([s.client for s in shims[1:]], SHIM_SERVICE, method,
                                  [r.SerializeToString() for r in requests], timeout)
    else:
        answers = []
        for shim, pending in [(s, s.start(method, r, timeout)) for s, r in zip(shims, requests)]:
            try:
                answers.append(shim.client.finish(pending))
            except Exception as e:
                answers.append(e)
    out = []
    for shim, answer in zip(shims, answers):
        if isinstance(answer, BaseException):
            if isinstance(answer, Unavailable) and _is_gone(answer) and shim.on_gone is not None:
                shim.on_gone(shim)
            out.append((shim, answer))
        else:
            out.append((shim, response_cls.FromString(answer)))
    return out


class RuntimeV2:
    def __init__(self, root, state, grpc_address, ttrpc_address, connector, publish=None,
                 start_timeout=START_TIMEOUT, load_timeout=LOAD_TIMEOUT):
        self.root = root
        self.state = state
        self.grpc_address = grpc_address
        self.ttrpc_address = ttrpc_address
        # connector(address, ns, timeout) -> client with .call(service, method, bytes, timeout),
        # .start(...) / .finish(pending) for concurrent calls, and .close()
        self.connector = connector
        self.on_close = []
        self.start_timeout = start_timeout
        self.load_timeout = load_timeout
        self.publish = publish or (lambda ns, topic, msg: None)
        self.lock = threading.Lock()
        self.shims = {}  # (ns, id) -> Shim
        self.shim_logs = ShimLogs()
        self.creating = set()

    # -- bundles

    def _bundle(self, ns, cid):
        return os.path.join(self.state, ns, cid)

    def _make_bundle(self, ns, cid, spec):
        bundle = self._bundle(ns, cid)
        work = os.path.join(self.root, ns, cid)
        os.makedirs(os.path.dirname(bundle), mode=0o711, exist_ok=True)
        os.mkdir(bundle, 0o711)
        os.makedirs(work, mode=0o711, exist_ok=True)
        os.mkdir(os.path.join(bundle, "rootfs"), 0o711)
        with open(os.path.join(bundle, "config.json"), "wb") as f:
            f.write(spec)
        os.symlink(work, os.path.join(bundle, "work"))
        return bundle

    def _remove_bundle(self, ns, cid):
        bundle = self._bundle(ns, cid)
        self.shim_logs.remove(bundle)
        rootfs = os.path.join(bundle, "rootfs")
        if os.path.ismount(rootfs):
            subprocess.run(["umount", "-l", rootfs], capture_output=True)
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.rmtree(os.path.join(self.root, ns, cid), ignore_errors=True)

    def _shim_log(self, bundle, cid):
        """The shim writes its log to the fifo "log" in the bundle; copy it into ours."""
        self.shim_logs.add(bundle, cid)

    # -- shim processes

    def _shim_command(self, binary, ns, cid, action, bundle=None):
        cmd = [binary, "-namespace", ns, "-address", self.grpc_address,
               "-publish-binary", os.path.join(os.path.dirname(sys.executable), "corrald"), "-id", cid]
        if bundle is not None:
            cmd += ["-bundle", bundle]
        return cmd + [action]

    def _shim_env(self, ns):
        env = dict(os.environ)
        env.update({"TTRPC_ADDRESS": self.ttrpc_address, "GRPC_ADDRESS": self.grpc_address,
                    "NAMESPACE": ns, "GOMAXPROCS": "2"})
        return env

    def _start_shim(self, ns, cid, runtime, bundle, options):
        binary = shim_binary(runtime)
        stdin = options.SerializeToString() if options is not None and options.type_url else b""
        try:
            res = subprocess.run(self._shim_command(binary, ns, cid, "start"), cwd=bundle, input=stdin,
                                 capture_output=True, timeout=self.start_timeout, env=self._shim_env(ns))
        except subprocess.TimeoutExpired:
            raise Unavailable(f"runtime {runtime}: shim start for {cid} timed out after {self.start_timeout}s") from None
        if res.returncode != 0:
            raise FailedPrecondition(f"runtime {runtime}: shim start for {cid} failed: "
                                     f"{res.stderr.decode(errors='replace').strip() or res.stdout.decode(errors='replace').strip()}")
        address = res.stdout.decode().strip()
        if not address:
            raise FailedPrecondition(f"runtime {runtime}: shim start for {cid} printed no address")
        with open(os.path.join(bundle, "runtime"), "w") as f:
            f.write(runtime)
        return address

    def _shim_delete(self, ns, cid, runtime, bundle):
        """Run `<shim> delete` for a shim that is gone; returns the DeleteResponse (or None)."""
        try:
            binary = shim_binary(runtime)
            res = subprocess.run(self._shim_command(binary, ns, cid, "delete", bundle), cwd=bundle,
                                 capture_output=True, timeout=self.start_timeout, env=self._shim_env(ns))
            if res.returncode == 0:
                return shim_pb2.DeleteResponse.FromString(res.stdout)
            log.warning("shim delete of %s/%s failed: %s", ns, cid, res.stderr.decode(errors="replace").strip())
        except Exception as e:
            log.warning("shim delete of %s/%s failed: %s", ns, cid, e)
        return None

    # -- tasks

    def create(self, ns, cid, spec, runtime, options, rootfs, stdin, stdout, stderr, terminal, checkpoint=""):
        with self.lock:
            if (ns, cid) in self.shims or (ns, cid) in self.creating:
                raise AlreadyExists(f"task {cid} already exists in namespace {ns}")
            self.creating.add((ns, cid))
        bundle = None
        shim = None
        try:
            if os.path.exists(self._bundle(ns, cid)):
                self._cleanup_stale(ns, cid)
            bundle = self._make_bundle(ns, cid, spec)
            self._shim_log(bundle, cid)
            address = self._start_shim(ns, cid, runtime, bundle, options)
            shim = Shim(ns, cid, bundle, address, runtime, self.connector(address, ns, self.start_timeout), self._gone)
            req = shim_pb2.CreateTaskRequest(id=cid, bundle=bundle, rootfs=rootfs, terminal=terminal,
                                             stdin=stdin, stdout=stdout, stderr=stderr, checkpoint=checkpoint)
            if options is not None and options.type_url:
                req.options.CopyFrom(options)
            resp = shim.call("Create", req, shim_pb2.CreateTaskResponse)
            with self.lock:
                self.shims[(ns, cid)] = shim
            return shim, resp.pid
        except Exception:
            if shim is not None:
                self._shutdown(shim)
            if bundle is not None:
                try:
                    rt = runtime
                    self._shim_delete(ns, cid, rt, bundle)
                finally:
                    self._remove_bundle(ns, cid)
            raise
        finally:
            with self.lock:
                self.creating.discard((ns, cid))

    def get(self, ns, cid):
        with self.lock:
            shim = self.shims.get((ns, cid))
        if shim is None:
            raise NotFound(f"task {cid} not found in namespace {ns}")
        return shim

    def list(self, ns):
        with self.lock:
            return [s for (n, _), s in self.shims.items() if n == ns]

    def all(self):
        with self.lock:
            return list(self.shims.values())

    def delete(self, ns, cid):
        """Delete the task's init process in the shim, shut the shim down, remove the bundle."""
        shim = self.get(ns, cid)
        # errors (a running task, a shim that died and was cleaned up) go to the caller
        resp = shim.call("Delete", shim_pb2.DeleteRequest(id=cid), shim_pb2.DeleteResponse)
        with self.lock:
            self.shims.pop((ns, cid), None)
        self._shutdown(shim)
        self._remove_bundle(ns, cid)
        return resp

    def _shutdown(self, shim):
        expect = getattr(shim.client, "expect_close", None)
        if expect is not None:
            expect()
        try:
            shim.client.call(SHIM_SERVICE, "Shutdown", shim_pb2.ShutdownRequest(id=shim.id).SerializeToString(), 5)
        except Exception:
            pass  # the shim exits when its last task is gone; a closed connection is expected
        try:
            shim.client.close()
        except Exception:
            pass

    def _gone(self, shim):
        """A shim died under a task: clean up as for a dead shim at start-up (once)."""
        with self.lock:
            if self.shims.get((shim.ns, shim.id)) is not shim:
                return
            del self.shims[(shim.ns, shim.id)]
        log.warning("shim of %s/%s exited unexpectedly: cleaning up", shim.ns, shim.id)
        try:
            shim.client.close()
        except Exception:
            pass
        self._cleanup_dead(shim.ns, shim.id, shim.runtime, shim.bundle)

    def _cleanup_dead(self, ns, cid, runtime, bundle):
        resp = self._shim_delete(ns, cid, runtime, bundle) or shim_pb2.DeleteResponse(exit_status=255)
        self.publish(ns, "/tasks/exit", task_events.TaskExit(
            container_id=cid, id=cid, pid=resp.pid, exit_status=resp.exit_status, exited_at=resp.exited_at))
        self.publish(ns, "/tasks/delete", task_events.TaskDelete(
            container_id=cid, pid=resp.pid, exit_status=resp.exit_status, exited_at=resp.exited_at))
        self._remove_bundle(ns, cid)

    def _cleanup_stale(self, ns, cid):
        bundle = self._bundle(ns, cid)
        runtime = _read(os.path.join(bundle, "runtime")) or "io.containerd.runc.v2"
        self._shim_delete(ns, cid, runtime, bundle)
        self._remove_bundle(ns, cid)

    # -- start-up

    def load(self):
        """Reconnect to every live shim; clean up after dead ones (recording their exit).
        Shims are probed concurrently, each within load_timeout, so a stuck one cannot stall
        the daemon's start."""
        if not os.path.isdir(self.state):
            return
        found = []
        for ns in sorted(os.listdir(self.state)):
            nsdir = os.path.join(self.state, ns)
            if os.path.isdir(nsdir):
                found += [(ns, cid) for cid in sorted(os.listdir(nsdir))]
        if not found:
            return
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=min(16, len(found)), thread_name_prefix="shim-load") as pool:
            list(pool.map(lambda item: self._load_one(*item), found))

    def _load_one(self, ns, cid):
        bundle = self._bundle(ns, cid)
        address = _read(os.path.join(bundle, "address"))
        runtime = _read(os.path.join(bundle, "runtime")) or "io.containerd.runc.v2"
        try:
            if not address:
                raise ConnectionError("no address file")
            client = self.connector(address, ns, self.load_timeout)
            shim = Shim(ns, cid, bundle, address, runtime, client, self._gone)
            shim.call("Connect", shim_pb2.ConnectRequest(id=cid), shim_pb2.ConnectResponse, timeout=self.load_timeout)
            self._shim_log(bundle, cid)
            with self.lock:
                self.shims[(ns, cid)] = shim
            log.info("reconnected to the shim of %s/%s", ns, cid)
        except Exception as e:
            log.info("shim of %s/%s is gone (%s): cleaning up", ns, cid, e)
            self._cleanup_dead(ns, cid, runtime, bundle)

    def close(self):
        """Disconnect from the shims; they and their containers keep running."""
        for shim in self.all():
            try:
                shim.client.close()
            except Exception:
                pass
        for fn in self.on_close:
            try:
                fn()
            except Exception as e:
                log.warning("runtime close: %s", e)
        self.shim_logs.close()


def _is_gone(e):
    return type(e).__name__ == "ShimGone"


class _Empty:
    @staticmethod
    def FromString(data):
        return None


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


__all__ = ["RuntimeV2", "Shim", "call_all", "shim_binary"]

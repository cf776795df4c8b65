"""The runtime v2 manager: bundles under the state directory, shims started by runtime name,
their Task API called over ttrpc, reconnection to live shims at start-up and clean-up of dead
ones.

Layout (as containerd's):  <state>/<ns>/<id>/        bundle: config.json, rootfs/, address,
                                                      log (fifo the shim writes its log to)
                           <root>/<ns>/<id>/          work dir (linked from the bundle as work)
                           <state>/<ns>/<id>/exit     only file left of a task whose shim died
                                                      while the daemon was down (see ExitedTask)

Start-up (load): every bundle's shim is probed concurrently. A shim that answers is reconnected;
one that is gone (nothing listens on its socket, or it closes the connection) is cleaned up
with `<shim> delete` and its task kept as stopped with the exit status found (an ExitedTask),
so clients that come after the restart see the exit: Get/List say STOPPED, Wait returns the
status, Delete removes the record (and publishes /tasks/delete); /tasks/exit is published once
the API serves. A shim that is there but does not answer in time (stopped, overloaded) is not
deleted: its task shows as UNKNOWN (an UnresponsiveTask) and is retried in the background
until the shim answers or goes away. Start-up waits for the probes at most load_wait seconds.
"""

import logging
import os
import shutil
import subprocess
import sys
import threading
import time

from corral.api.containerd.runtime.v2.task import shim_pb2
from corral.api.containerd.events import task_pb2 as task_events
from corral.api.containerd.types import task_pb2 as task_types
from corral.daemon.shimlogs import ShimLogs
from corral.services.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable

log = logging.getLogger("corrald")

SHIM_SERVICE = "containerd.task.v2.Task"
START_TIMEOUT = 30
CALL_TIMEOUT = 30
LOAD_TIMEOUT = 5  # per shim at start-up: a shim silent this long is left to the background
LOAD_WAIT = 2  # start-up waits this long for the probes, then serves; the rest go on behind
RETRY_MAX = 10  # seconds between reconnection attempts to an unresponsive shim, at most
EXIT_FILE = "exit"
OWN_RUNTIME = "io.containerd.corral.v2"  # started in-process (see _start_own_shim)


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

    def finish(self, pending, response_cls, alive=None, cancel_with=None):
        try:
            data = self.client.finish(pending, alive, cancel_with)
        except Unavailable as e:
            if self.on_gone is None or not _is_gone(e):
                raise
            self.on_gone(self)
            raise NotFound(f"task {self.id}: its shim exited, the task was cleaned up ({e})") from None
        return response_cls.FromString(data)


class LocalTask:
    """A task the daemon answers for itself, without a shim: the same call interface as Shim."""

    local = True

    def __init__(self, ns, id, bundle, runtime, pid=0):
        self.ns = ns
        self.id = id
        self.bundle = bundle
        self.runtime = runtime
        self.pid = pid

    def call(self, method, request, response_cls, timeout=None):
        return self.answer(method, request)

    def start(self, method, request, timeout=None):
        return method, request

    def finish(self, pending, response_cls, alive=None, cancel_with=None):
        return self.answer(*pending)

    def answer(self, method, request):
        raise NotImplementedError


class ExitedTask(LocalTask):
    """A task whose shim died while the daemon was down: `<shim> delete` cleaned up and told
    the exit (runc's shim says 137, as it cannot know more), which is kept, in the bundle's
    exit file, until the task is deleted."""

    def __init__(self, ns, id, bundle, runtime, pid, exit_status, exited_at):
        super().__init__(ns, id, bundle, runtime, pid)
        self.exit_status = exit_status
        self.exited_at = exited_at  # Timestamp

    def answer(self, method, request):
        exec_id = getattr(request, "exec_id", "")
        if exec_id:
            raise NotFound(f"process {exec_id} of task {self.id} not found: the task has exited")
        if method == "State":
            return shim_pb2.StateResponse(id=self.id, bundle=self.bundle, pid=self.pid, status=task_types.STOPPED,
                                          exit_status=self.exit_status, exited_at=self.exited_at)
        if method == "Wait":
            return shim_pb2.WaitResponse(exit_status=self.exit_status, exited_at=self.exited_at)
        if method == "Pids":
            return shim_pb2.PidsResponse()
        if method in ("Kill", "Stats"):
            raise NotFound(f"task {self.id}: process already finished")
        raise FailedPrecondition(f"task {self.id} has exited (its shim ended while corrald was down): "
                                 f"cannot {method.lower()} it; delete the task")

    def delete_response(self):
        return shim_pb2.DeleteResponse(pid=self.pid, exit_status=self.exit_status, exited_at=self.exited_at)


class UnresponsiveTask(LocalTask):
    """A task whose shim did not answer at start-up (yet): shown as UNKNOWN, never deleted
    for that; corrald keeps trying to reconnect in the background."""

    def __init__(self, ns, id, bundle, runtime, address, pid=0):
        super().__init__(ns, id, bundle, runtime, pid)
        self.address = address
        self.reason = "not probed yet"

    def answer(self, method, request):
        if method == "State" and not getattr(request, "exec_id", ""):
            return shim_pb2.StateResponse(id=self.id, bundle=self.bundle, pid=self.pid, status=task_types.UNKNOWN)
        raise Unavailable(f"task {self.id}: its shim does not answer ({self.reason}); corrald keeps trying "
                          f"to reconnect, try again later")


def call_all(shims, method, requests, response_cls, timeout=CALL_TIMEOUT):
    """The same call to many shims at once: [(shim, response or the error it raised)]."""
    if any(getattr(s, "local", False) for s in shims):
        remote = [(s, r) for s, r in zip(shims, requests) if not getattr(s, "local", False)]
        answers = dict(zip((id(s) for s, _ in remote),
                           (a for _, a in call_all([s for s, _ in remote], method, [r for _, r in remote],
                                                   response_cls, timeout))))
        out = []
        for s, r in zip(shims, requests):
            if getattr(s, "local", False):
                try:
                    out.append((s, s.answer(method, r)))
                except Exception as e:
                    out.append((s, e))
            else:
                out.append((s, answers[id(s)]))
        return out
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
                 start_timeout=START_TIMEOUT, load_timeout=LOAD_TIMEOUT, load_wait=LOAD_WAIT):
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
        self.load_wait = load_wait
        self.serving = False  # set by serve(): events published before then had no subscriber
        self.early_events = []  # (ns, topic, message) held until serve()
        self.closing = threading.Event()
        self.removing = {}  # (ns, id) -> Event set once a deleted task's bundle is gone

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
        address = self._start_own_shim(ns, cid, runtime, bundle, stdin) if runtime == OWN_RUNTIME else None
        if address is None:
            address = self._exec_shim_start(binary, ns, cid, runtime, bundle, stdin)
        with open(os.path.join(bundle, "runtime"), "w") as f:
            f.write(runtime)
        return address

    def _start_own_shim(self, ns, cid, runtime, bundle, stdin):
        """corral's shim without exec'ing its `start` (sh, an interpreter and imports: ~30 ms a
        container): the same work done here, the server forked by the shim's zygote. None when
        the zygote cannot serve (switched off, or it did not start): the caller execs `start`."""
        from corral.shim.main import Flags
        from corral.shim.start import start_server

        flags = Flags()
        flags.namespace, flags.address, flags.id, flags.action = ns, self.grpc_address, cid, "start"
        flags.publish_binary = os.path.join(os.path.dirname(sys.executable), "corrald")
        try:
            return start_server(flags, bundle, stdin, self._shim_env(ns), fork=False)
        except Exception as e:
            log.warning("starting the shim of %s/%s through its zygote failed (%s); running its start", ns, cid, e)
            return None

    def _exec_shim_start(self, binary, ns, cid, runtime, bundle, stdin):
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
            with self.lock:
                removing = self.removing.get((ns, cid))
            if removing is not None:
                removing.wait(self.start_timeout)  # the last task of this id is still being cleared
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
        if isinstance(shim, ExitedTask):
            with self.lock:
                if self.shims.get((ns, cid)) is not shim:
                    raise NotFound(f"task {cid} not found in namespace {ns}")
                del self.shims[(ns, cid)]
            self._remove_bundle(ns, cid)
            resp = shim.delete_response()
            self.publish(ns, "/tasks/delete", task_events.TaskDelete(
                container_id=cid, id=cid, pid=resp.pid, exit_status=resp.exit_status, exited_at=resp.exited_at))
            return resp
        # errors (a running task, a shim that died and was cleaned up, one that does not
        # answer) go to the caller
        try:
            resp = shim.call("Delete", shim_pb2.DeleteRequest(id=cid), shim_pb2.DeleteResponse)
        except NotFound:
            # the shim does not hold the task (any more): as containerd does, the task is
            # dropped, its shim shut down and its bundle removed, and NOT_FOUND told; otherwise
            # the id could never be created again (a shim that died: _gone cleaned up already)
            self._remove_taskless(shim, shim, "does not hold the task")
            raise
        if os.path.ismount(os.path.join(shim.bundle, "rootfs")):
            with self.lock:  # the shim left its rootfs mounted: unmount before the caller goes on
                self.shims.pop((ns, cid), None)
            self._shutdown(shim)
            self._remove_bundle(ns, cid)
            return resp
        # the shim's shutdown and the removal of the bundle (~10 ms of rmtree) need not hold up
        # the caller: a create of the same id waits for them
        done = threading.Event()
        with self.lock:
            self.shims.pop((ns, cid), None)
            self.removing[(ns, cid)] = done
        expect = getattr(shim.client, "expect_close", None)
        if expect is not None:
            expect()
        threading.Thread(target=self._finish_delete, args=(shim, done), name="task-delete", daemon=True).start()
        return resp

    def _finish_delete(self, shim, done):
        try:
            self._shutdown(shim)
            self._remove_bundle(shim.ns, shim.id)
        except Exception as e:
            log.warning("removing the bundle of %s/%s: %s", shim.ns, shim.id, e)
        finally:
            with self.lock:
                if self.removing.get((shim.ns, shim.id)) is done:
                    del self.removing[(shim.ns, shim.id)]
            done.set()

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
        """A shim died under a task: clean up as for a dead shim at start-up (once). Subscribers
        are there to see its exit, so no record is kept (as containerd does)."""
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
        """Reconnect to every live shim; clean up after dead ones, keeping their exit. Shims
        are probed concurrently; start-up waits for them at most load_wait seconds, and what is
        not settled by then (a stuck shim, a slow clean-up) goes on in the background, its task
        shown as UNKNOWN meanwhile. A shim that does not answer is never deleted for that."""
        if not os.path.isdir(self.state):
            return
        found = []
        for ns in sorted(os.listdir(self.state)):
            nsdir = os.path.join(self.state, ns)
            if os.path.isdir(nsdir):
                found += [(ns, cid) for cid in sorted(os.listdir(nsdir))]
        pending = []
        for ns, cid in found:
            bundle = self._bundle(ns, cid)
            runtime = _read(os.path.join(bundle, "runtime")) or "io.containerd.runc.v2"
            exited = _read_exit(os.path.join(bundle, EXIT_FILE))
            if exited is not None:
                pid, status, at = exited
                self.shims[(ns, cid)] = ExitedTask(ns, cid, bundle, runtime, pid, status, at)
                continue
            task = UnresponsiveTask(ns, cid, bundle, runtime, _read(os.path.join(bundle, "address")),
                                    _read_int(os.path.join(bundle, "init.pid")))
            self.shims[(ns, cid)] = task
            pending.append(task)
        if not pending:
            return
        from concurrent.futures import ThreadPoolExecutor, wait
        pool = ThreadPoolExecutor(max_workers=min(16, len(pending)), thread_name_prefix="shim-load")
        futures = [pool.submit(self._settle, t) for t in pending]
        pool.shutdown(wait=False)  # its threads finish what start-up does not wait for
        done, late = wait(futures, timeout=self.load_wait)
        if late:
            log.warning("%d of %d shims not settled after %.1fs; serving, they are handled in the background",
                        len(late), len(pending), self.load_wait)

    def _settle(self, task):
        """Probe one shim until it is reconnected or found gone (then cleaned up)."""
        delay = 0.5
        while not self.closing.is_set():
            try:
                outcome = self._probe(task)
            except Exception as e:  # never leave a task unsettled by a bug of ours silently
                log.warning("probing the shim of %s/%s failed: %s", task.ns, task.id, e)
                outcome = "stuck"
            if outcome != "stuck":
                return outcome
            if delay == 0.5:
                log.warning("shim of %s/%s does not answer (%s): task shown as UNKNOWN, retrying",
                            task.ns, task.id, task.reason)
            if self.closing.wait(delay):
                return "closed"
            delay = min(delay * 2, RETRY_MAX)
        return "closed"

    def _probe(self, task):
        """'connected', 'gone' (cleaned up) or 'stuck' (there, but no answer in time)."""
        ns, cid = task.ns, task.id
        gone = None
        if not task.address:
            gone = "no address file"
        else:
            try:
                client = self.connector(task.address, ns, self.load_timeout)
            except Unavailable as e:
                if not getattr(e, "refused", False):
                    task.reason = str(e)
                    return "stuck"
                gone = str(e)
        if gone is None:
            shim = Shim(ns, cid, task.bundle, task.address, task.runtime, client, self._gone)
            try:
                connected = shim_pb2.ConnectResponse.FromString(shim.client.call(
                    SHIM_SERVICE, "Connect", shim_pb2.ConnectRequest(id=cid).SerializeToString(), self.load_timeout))
                if not connected.task_pid and not self._holds_task(shim):
                    # the daemon died after the task was deleted but before the shim's shutdown
                    # and the bundle's removal (they run behind delete's answer), or after the
                    # shim was started but before its Create: no task is left to report
                    if not self._remove_taskless(task, shim, "no longer holds the task (deleted, or "
                                                 "its create cut short, before corrald ended)"):
                        shim.client.close()
                    return "gone"
            except Exception as e:
                if _is_gone(e) or isinstance(e, NotFound):
                    gone = str(e)
                elif isinstance(e, Unavailable) or getattr(e, "grpc_code", "") == "DEADLINE_EXCEEDED":
                    task.reason = str(e)
                    try:
                        shim.client.close()
                    except Exception:
                        pass
                    return "stuck"
                # any other answer still comes from a live shim: keep it
                log.info("shim of %s/%s answered Connect with an error (%s); keeping it", ns, cid, e)
        if gone is None:
            with self.lock:
                if self.shims.get((ns, cid)) is not task:
                    replaced = True
                else:
                    replaced = False
                    self.shims[(ns, cid)] = shim
            if replaced:
                shim.client.close()
                return "gone"
            self._shim_log(task.bundle, cid)
            log.info("reconnected to the shim of %s/%s", ns, cid)
            return "connected"
        log.info("shim of %s/%s is gone (%s): cleaning up", ns, cid, gone)
        self._cleanup_dead_at_load(task)
        return "gone"

    def _holds_task(self, shim):
        """Whether a shim that answers still holds its task. Connect answers for the shim (a task
        pid of 0 also while a create is under way in it); State says NOT_FOUND once the task is
        deleted, or when its create never reached the shim."""
        try:
            shim.client.call(SHIM_SERVICE, "State", shim_pb2.StateRequest(id=shim.id).SerializeToString(),
                             self.load_timeout)
        except NotFound:
            return False
        return True

    def _remove_taskless(self, entry, shim, why):
        """A live shim without its task (containerd cleans up such a leaked shim too): the
        task's entry is dropped, the shim shut down and the bundle removed, and a create of the
        same id waits for that, as after a delete. False when entry is no longer the table's."""
        ns, cid = shim.ns, shim.id
        done = threading.Event()
        with self.lock:
            if self.shims.get((ns, cid)) is not entry:
                return False
            del self.shims[(ns, cid)]
            self.removing[(ns, cid)] = done
        log.info("shim of %s/%s %s: shutting it down and removing the bundle", ns, cid, why)
        try:
            self._shutdown(shim)
            self._cleanup_stale(ns, cid)
        finally:
            with self.lock:
                if self.removing.get((ns, cid)) is done:
                    del self.removing[(ns, cid)]
            done.set()
        return True

    def _cleanup_dead_at_load(self, task):
        """`<shim> delete` for a shim that died while the daemon was down; the task is kept as
        stopped with the exit found, and /tasks/exit published once subscribers can exist.
        A bundle without init.pid never got its task created: it is just removed."""
        ns, cid, bundle = task.ns, task.id, task.bundle
        had_task = os.path.exists(os.path.join(bundle, "init.pid"))
        resp = self._shim_delete(ns, cid, task.runtime, bundle) or shim_pb2.DeleteResponse(exit_status=255)
        if not resp.exited_at.seconds:
            resp.exited_at.FromNanoseconds(time.time_ns())
        pid = resp.pid or task.pid
        self._remove_bundle(ns, cid)
        if not had_task:
            with self.lock:
                if self.shims.get((ns, cid)) is task:
                    del self.shims[(ns, cid)]
            return
        try:
            _write_exit(os.path.join(bundle, EXIT_FILE), pid, resp.exit_status, resp.exited_at)
        except OSError as e:
            log.warning("cannot keep the exit of %s/%s: %s", ns, cid, e)
        exited = ExitedTask(ns, cid, bundle, task.runtime, pid, resp.exit_status, resp.exited_at)
        with self.lock:
            if self.shims.get((ns, cid)) is task:
                self.shims[(ns, cid)] = exited
        log.info("task %s/%s exited while corrald was down (status %d): kept as stopped until deleted",
                 ns, cid, resp.exit_status)
        self._publish_when_serving(ns, "/tasks/exit", task_events.TaskExit(
            container_id=cid, id=cid, pid=pid, exit_status=resp.exit_status, exited_at=resp.exited_at))

    def _publish_when_serving(self, ns, topic, message):
        with self.lock:
            if not self.serving:
                self.early_events.append((ns, topic, message))
                return
        self.publish(ns, topic, message)

    def serve(self):
        """Called once the daemon serves its API: events of exits found at start-up go out
        now, when subscribers (the restart monitor's and clients') can be there."""
        with self.lock:
            self.serving = True
            events, self.early_events = self.early_events, []
        for ns, topic, message in events:
            try:
                self.publish(ns, topic, message)
            except Exception as e:
                log.warning("publishing %s for %s failed: %s", topic, ns, e)

    def close(self):
        """Disconnect from the shims; they and their containers keep running."""
        self.closing.set()
        with self.lock:
            removing = list(self.removing.values())
        for done in removing:  # deletes finishing behind their answers
            done.wait(10)
        for shim in self.all():
            if getattr(shim, "local", False):
                continue
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


def _read_int(path):
    try:
        return int(_read(path) or 0)
    except ValueError:
        return 0


def _write_exit(path, pid, status, exited_at):
    import json
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": pid, "exit_status": status, "exited_at_ns": exited_at.ToNanoseconds()}, f)
    os.rename(tmp, path)


def _read_exit(path):
    """(pid, exit status, Timestamp) from an exit file, or None."""
    import json
    from google.protobuf import timestamp_pb2
    try:
        with open(path) as f:
            d = json.load(f)
        at = timestamp_pb2.Timestamp()
        at.FromNanoseconds(int(d.get("exited_at_ns", 0)))
        return int(d.get("pid", 0)), int(d["exit_status"]), at
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


__all__ = ["ExitedTask", "RuntimeV2", "Shim", "UnresponsiveTask", "call_all", "shim_binary"]

"""Restart policies, carried out by the daemon (containerd's restart-monitor labels).

Labels on the container record:
  containerd.io/restart.policy   always | on-failure[:N] | unless-stopped (absent or "no": none)
  containerd.io/restart.status   running (set by start) | stopped (set by stop and rm -f);
                                 absent: never started, so never started by us either
  containerd.io/restart.loguri   the stdio URI the new task gets (else corral/log-uri)
  containerd.io/restart.count    restarts done so far (on-failure:N stops at N)

When a container's init process exits (a /tasks/exit event, or found stopped by the periodic
check), and its policy wants it running, the old task is deleted and a new one created and
started with the same spec, rootfs (the container's snapshot) and log URI. Restarts back off
as docker's do: 100 ms doubling up to a minute, back to 100 ms once a run lasted 10 s.

At daemon start-up every container is checked once: a task that exited while the daemon was
down is restarted; a task lost with its shim is started again if the policy wants it running
(`always` even after an explicit stop, as docker does on a daemon restart; `unless-stopped`
not). The monitor drives the daemon through its own gRPC API, as any client would.
"""

import json
import logging
import threading
import time

log = logging.getLogger("corrald")

POLICY = "containerd.io/restart.policy"
STATUS = "containerd.io/restart.status"
LOGURI = "containerd.io/restart.loguri"
COUNT = "containerd.io/restart.count"
CORRAL_LOGURI = "corral/log-uri"

MIN_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0  # a run this long resets the backoff

# containerd.v1.types.Status
_UNKNOWN, _CREATED, _RUNNING, _STOPPED, _PAUSED, _PAUSING = 0, 1, 2, 3, 4, 5


def parse_policy(text):
    """(name, max restarts or 0) or None for no policy; ValueError for a bad one."""
    if not text or text == "no":
        return None
    name, _, count = text.partition(":")
    if name in ("always", "unless-stopped") and not count:
        return name, 0
    if name == "on-failure" and (not count or count.isdigit()):
        return name, int(count or 0)
    raise ValueError(f"invalid restart policy {text!r}")


def wants_restart(labels, task, startup=False, stale=False):
    """Whether a container with these labels and this task (a tasks Process message, or None
    when it has none) should be (re)started now. A task still only created (never started) is
    someone's start in progress, unless this is start-up or it was seen so before (stale): then
    a start was cut short (by a daemon crash) and is done again."""
    try:
        policy = parse_policy(labels.get(POLICY, ""))
    except ValueError:
        return False
    if policy is None:
        return False
    name, max_count = policy
    status = labels.get(STATUS)
    if status is None:
        return False  # never started
    if status == "stopped" and not (startup and name == "always"):
        return False
    if task is None:
        return startup  # lost with its shim; otherwise someone is removing or creating it
    if task.status == _CREATED:
        return startup or stale
    if task.status != _STOPPED:
        return False
    if name == "on-failure":
        if task.exit_status == 0:
            return False
        count = labels.get(COUNT, "0")
        if max_count and (int(count) if count.isdigit() else 0) >= max_count:
            return False
    return True


class RestartMonitor:
    def __init__(self, exchange, address, interval=5.0, min_delay=MIN_DELAY, max_delay=MAX_DELAY,
                 reset_after=RESET_AFTER):
        self.exchange = exchange
        self.address = address
        self.interval = interval
        self.min_delay, self.max_delay, self.reset_after = min_delay, max_delay, reset_after
        self.sub = exchange.subscribe(['topic=="/tasks/exit"'])
        self.stopping = threading.Event()
        self.thread = None
        self.client = None
        self.due = {}       # (ns, id) -> monotonic time of the next attempt
        self.backoff = {}   # (ns, id) -> (delay used last, monotonic time of that start)
        self.created = {}   # (ns, id) -> pid of a task found only created at the last check
        self.retry_startup = set()  # (ns, id) whose start-up restart failed: retried as such
        self.unsettled = set()  # (ns, id) whose shim had not answered at start-up: checked with
        #                         start-up rules once it has (reconnected, or cleaned up)

    # -- plugin life

    def serve(self):
        """Called once the daemon serves its API: check everything, then watch."""
        self.thread = threading.Thread(target=self._run, name="restart-monitor", daemon=True)
        self.thread.start()

    def close(self):
        self.stopping.set()
        self.sub.close()
        if self.thread is not None:
            self.thread.join(10)
        if self.client is not None:
            self.client.close()

    # -- the loop

    def _run(self):
        from corral.client import Client
        self.client = Client(self.address, timeout=60)
        try:
            self._check_all(startup=True)
        except Exception as e:
            log.warning("restart monitor: start-up check failed: %s", e)
        next_check = time.monotonic() + self.interval
        while not self.stopping.is_set():
            now = time.monotonic()
            wake = min([next_check] + list(self.due.values()))
            env = self.sub.get(max(0.0, wake - now))  # close() wakes it for a stop
            if self.stopping.is_set():
                return
            if self.sub.dropped:  # we fell behind and the exchange let us go: catch up by a check
                self.sub = self.exchange.subscribe(['topic=="/tasks/exit"'])
                next_check = time.monotonic()
            if env is not None:
                self._on_exit(env)
            now = time.monotonic()
            for key in [k for k, t in self.due.items() if t <= now]:
                del self.due[key]
                try:
                    self._restart(*key, startup=key in self.retry_startup)
                    self.retry_startup.discard(key)
                except Exception as e:
                    log.warning("restart monitor: restarting %s/%s failed: %s", key[0], key[1], e)
                    self._schedule(key, failed=True)
            if now >= next_check:
                try:
                    self._check_all(startup=False)
                except Exception as e:
                    log.warning("restart monitor: periodic check failed: %s", e)
                next_check = time.monotonic() + self.interval

    def _on_exit(self, env):
        from corral.api.containerd.events import task_pb2
        ev = task_pb2.TaskExit.FromString(env.event.value)  # the subscription's topic says so
        if ev.id and ev.id != ev.container_id:
            return  # an exec'd process
        self._schedule((env.namespace, ev.container_id))

    def _schedule(self, key, failed=False):
        """The next attempt for a container, after its backoff delay (an attempt that failed is
        no run: the delay grows until one succeeds)."""
        if key in self.due:
            return
        delay, started = self.backoff.get(key, (0.0, 0.0))
        now = time.monotonic()
        if not delay or (not failed and now - started >= self.reset_after):
            delay = self.min_delay
        else:
            delay = min(delay * 2, self.max_delay)
        self.backoff[key] = (delay, started)
        self.due[key] = now + delay

    def _check_all(self, startup):
        for ns in self.client.namespaces():
            c = self.client.with_namespace(ns.name)
            records = [r for r in c.list_containers(f'labels."{POLICY}"') if r.labels.get(POLICY, "no") != "no"]
            if not records:
                continue
            tasks = {t.id: t for t in c.tasks()}
            for rec in records:
                key = (ns.name, rec.id)
                task = tasks.get(rec.id)
                stale = task is not None and task.status == _CREATED and self.created.get(key) == task.pid
                if task is not None and task.status == _CREATED:
                    self.created[key] = task.pid
                else:
                    self.created.pop(key, None)
                # a task whose shim did not answer in time at start-up shows UNKNOWN; it is
                # judged by start-up rules once its shim is settled (it may turn out stopped, or
                # be gone with a shim that no longer held it)
                rules = startup
                if task is not None and task.status == _UNKNOWN:
                    if startup:
                        self.unsettled.add(key)
                elif key in self.unsettled:
                    self.unsettled.discard(key)
                    rules = True
                want = wants_restart(rec.labels, task, rules, stale)
                log.debug("restart monitor: %s/%s policy=%s status=%s task=%s exit=%s startup=%s -> %s",
                          ns.name, rec.id, rec.labels.get(POLICY), rec.labels.get(STATUS),
                          task.status if task is not None else None,
                          task.exit_status if task is not None else None, rules, want)
                if want:
                    if not (rules or stale):
                        self._schedule(key)
                        continue
                    try:
                        self._restart(*key, startup=True)
                    except Exception as e:
                        log.warning("restart monitor: starting %s/%s failed: %s", ns.name, rec.id, e)
                        self.retry_startup.add(key)
                        self._schedule(key, failed=True)

    def _restart(self, ns, cid, startup=False):
        from corral.client import ClientError
        c = self.client.with_namespace(ns)
        try:
            rec = c.container(cid)
        except ClientError as e:
            if e.code == "NOT_FOUND":
                self.backoff.pop((ns, cid), None)
                return
            raise
        try:
            task = c.task(cid)
        except ClientError as e:
            if e.code != "NOT_FOUND":
                raise
            task = None
        # looked at again now: a stop, rm or start may have come since the exit
        if not wants_restart(rec.labels, task, startup):
            return
        if task is not None:
            try:
                c.delete_task(cid)
            except ClientError as e:
                if e.code != "NOT_FOUND":
                    raise
        spec = json.loads(rec.spec.value or b"{}")
        terminal = bool(spec.get("process", {}).get("terminal"))
        uri = rec.labels.get(LOGURI) or rec.labels.get(CORRAL_LOGURI, "")
        count = rec.labels.get(COUNT, "0")
        update = {COUNT: str((int(count) if count.isdigit() else 0) + 1)}
        if rec.labels.get(STATUS) != "running":
            update[STATUS] = "running"
        c.update_container_labels(cid, update)
        try:
            c.create_task(cid, "", uri, uri, terminal)
        except ClientError as e:
            if e.code != "ALREADY_EXISTS" or not startup:
                if e.code == "ALREADY_EXISTS":
                    return  # started by someone else meanwhile
                raise
            # a create cut short by a daemon crash: the runtime holds a shim and bundle that no
            # task answers for; delete them and create again
            log.info("restart monitor: %s/%s has a half-made task; deleting it", ns, cid)
            try:
                c.delete_task(cid)
            except ClientError as e2:
                if e2.code != "NOT_FOUND":
                    raise
            c.create_task(cid, "", uri, uri, terminal)
        try:
            pid = c.start_task(cid)
        except BaseException:
            try:
                c.delete_task(cid)
            except ClientError:
                pass
            raise
        delay, _ = self.backoff.get((ns, cid), (0.0, 0.0))
        self.backoff[(ns, cid)] = (delay, time.monotonic())
        log.info("restart monitor: restarted %s/%s (pid %d, restart %s)", ns, cid, pid, update[COUNT])

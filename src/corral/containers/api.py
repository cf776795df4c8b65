"""corral.Client's high-level surface: `client.images` and `client.containers` collections,
`Image` and `Container` objects. The `corral` CLI is built on these: one way to do each thing.

    c = Client(address)
    ctr = c.containers.create("busybox", ["echo", "hi"], name="hello")
    ctr.start(); ctr.wait(); print(ctr.logs()); ctr.remove()
"""

import json
import os
import signal as _signal
import time

from corral.containers import labels as L
from corral.containers import names
from corral.containers.image import Image, ImageNotFound, normalize
from corral.containers.spec import Options, SpecError
from corral.containers.stdio import remove_tree

RUNTIME = "io.containerd.corral.v2"
SNAPSHOTTER = "overlayfs"
DEFAULT_DATA_ROOT = "/var/lib/corral"
LOG_MAX_SIZE = 10 << 20
LOG_MAX_FILE = 3
RESTART_SETTLE = 1.0  # seconds a stopped container with a restart policy is watched for a late restart


class ContainerError(Exception):
    """A failed container operation, said for a person (the CLI prints it as is)."""


def _client_error():
    from corral.client import ClientError
    return ClientError


# -- images

class Images:
    def __init__(self, client):
        self.client = client

    def __call__(self, *filters):
        return self.client.list_images(*filters)

    def list(self, *filters):
        return [Image(self.client, r) for r in self.client.list_images(*filters)]

    def get(self, name):
        """The image called `name` (normalized: busybox -> docker.io/library/busybox:latest)."""
        return self._get(name)()

    def _get(self, name):
        """Ask for the image now; the returned function gives it (or raises ImageNotFound)."""
        try:
            full = normalize(name)
        except ValueError as e:
            raise ImageNotFound(str(e)) from None
        c = self.client
        answer = c._future("images", "Get", c._pb("images").GetImageRequest(name=full), timeout=0)

        def image():
            try:
                return Image(c, answer.result().image)
            except _client_error() as e:
                if e.code == "NOT_FOUND":
                    raise ImageNotFound(f"image {name} not found; pull it first (corral pull {name})") from None
                raise
        return image

    def tag(self, source, target):
        img = self.get(source)
        full = normalize(target)
        try:
            rec = self.client.create_image(full, img.record.target, labels=img.labels)
        except _client_error() as e:
            if e.code != "ALREADY_EXISTS":
                raise
            rec = self.client.update_image(full, img.record.target, labels=img.labels)
        return Image(self.client, rec)

    def remove(self, name, sync=False):
        img = self.get(name)
        self.client.delete_image(img.name, sync=sync)


# -- containers

class Containers:
    def __init__(self, client, data_root=None):
        self.client = client
        self.data_root = data_root or getattr(client, "data_root", None) or DEFAULT_DATA_ROOT

    def __call__(self, *filters):
        return self.client.list_containers(*filters)

    def _records(self):
        return self.client.list_containers()

    def list(self, all=False):
        """Containers, newest first; only running ones unless all=True."""
        tasks = {t.container_id: t for t in self.client.tasks()}
        out = [Container(self.client, r, self.data_root, tasks.get(r.id, False)) for r in self._records()]
        out.sort(key=lambda c: (c.record.created_at.seconds, c.record.created_at.nanos), reverse=True)
        return out if all else [c for c in out if c.status == "running"]

    def get(self, ref):
        try:
            return Container(self.client, names.resolve(self._records(), ref), self.data_root)
        except names.ResolveError as e:
            raise ContainerError(str(e)) from None

    def create(self, image, command=None, *, name=None, options=None, restart=None, log_opts=None,
               platform=None, **kw):
        """A new container (not started). options: corral.containers.spec.Options (or its
        fields as keywords). Nothing is left behind when this fails."""
        from corral.containers import spec as specmod
        opts = options or Options(**kw)
        if command is not None:
            opts.command = list(command)
        # the image, the containers (their names) and a lease are asked for at once: three
        # calls in flight on the connection, one round trip. What is made from here on is
        # under the lease until the record (which then references the snapshot) exists, so
        # the daemon's garbage collection cannot take the snapshot in between.
        c = self.client
        image_of = Images(c)._get(image)
        listed = c._future("containers", "List", c._pb("containers").ListContainersRequest(), timeout=0)
        leased_f = c._future("leases", "Create", c._lease_request(600), timeout=0)
        try:
            img = image_of()
            if name:
                try:
                    names.check_name(name)
                except names.ResolveError as e:
                    raise ContainerError(str(e)) from None
            records = listed.result().containers
            taken = {r.labels.get(L.NAME) for r in records}
            if not name:
                name = names.generate_name(taken)
            elif name in taken:
                other = [r.id for r in records if r.labels.get(L.NAME) == name][0]
                raise ContainerError(f"the container name {name!r} is already in use by container {other[:12]}; "
                                     "remove it or choose another name")
            restart = restart or "no"
            check_restart(restart)
            lease = leased_f.result().lease.id
            cid = names.new_id()
            ns = self.client.namespace
            cdir = os.path.join(self.data_root, "containers", ns, cid)
            log_path = os.path.join(cdir, f"{cid}-json.log")
            max_size, max_file = _log_opts(log_opts or {})
            log_uri = f"jsonfile://{log_path}?max-size={max_size}&max-file={max_file}"
            labels = dict(opts.labels)
            labels.update({L.NAME: name, L.CREATED_BY: "corral", L.LOG_URI: log_uri,
                           L.HOSTNAME: opts.hostname or cid[:12],
                           L.NETWORKS: json.dumps([opts.network]), L.PORTS: json.dumps(opts.ports),
                           L.PLATFORM: f"{img.config().get('os', 'linux')}/{img.config().get('architecture', '')}"})
            stop_signal = (img.config().get("config") or {}).get("StopSignal")
            if stop_signal:
                parse_signal(stop_signal)  # a bad one is refused now, not at stop
                labels[L.STOP_SIGNAL] = stop_signal
            if opts.tty:
                labels[L.TTY] = "1"
            if opts.stdin_open:
                labels[L.STDIN_OPEN] = "1"
            if restart != "no":
                labels[L.RESTART_POLICY] = restart  # restart.status is set by start: never started = absent
                labels[L.RESTART_LOGURI] = log_uri
            opts.labels = dict(opts.labels, **{L.NAME: name})
        except BaseException:
            try:
                _ignore(c.delete_lease, leased_f.result().lease.id)
            except Exception:
                pass
            raise
        made_snapshot = made_dir = made_record = False
        leased = self.client.with_lease(lease)
        try:
            # the snapshot is prepared while the spec is made (it needs the rootfs only to look
            # a user up); the record is made once both are there
            pb = self.client._pb("snapshots")
            prepared = leased._future("snapshots", "Prepare", pb.PrepareSnapshotRequest(
                snapshotter=SNAPSHOTTER, key=cid, parent=img.chain_id()), timeout=0)
            made_snapshot = True  # asked for: removed on failure (not there: ignored)
            os.makedirs(cdir, mode=0o700)
            made_dir = True
            vol_mounts, vol_label = _volume_mounts(opts, self.data_root, ns)
            if vol_label:
                labels[L.VOLUMES] = json.dumps(vol_label)
            spec = specmod.build(image_config=img.config(), opts=opts, container_id=cid, namespace=ns,
                                 rootfs_dirs=lambda: specmod.lookup_dirs(prepared.result().mounts),
                                 data_root=self.data_root, volume_mounts=vol_mounts)
            prepared.result()
            rec = self.client.create_container(cid, spec, runtime=RUNTIME, image=img.name, snapshotter=SNAPSHOTTER,
                                               snapshot_key=cid, labels=labels)
            made_record = True
        except BaseException:
            if made_record:
                _ignore(self.client.delete_container, cid)
            if made_snapshot:
                _ignore(prepared.result)  # settled first, so the removal cannot come before it
                _ignore(self.client.remove_snapshot, cid, SNAPSHOTTER)
            if made_dir:
                remove_tree(cdir)
            _ignore(self.client.delete_lease, lease)
            raise
        # the lease is not needed any more: its deletion is sent and not waited for (it
        # expires anyway; a failure was ignored before too)
        self.client._future("leases", "Delete", self.client._pb("leases").DeleteRequest(id=lease), timeout=0)
        return Container(self.client, rec, self.data_root, False)

    def run(self, image, command=None, **kw):
        """create + start, detached (the output goes to the container's log)."""
        c = self.create(image, command, **kw)
        try:
            c.start()
        except BaseException:
            _ignore(c.remove, force=True)
            raise
        return c

    def remove(self, ref, force=False):
        self.get(ref).remove(force=force)


def _ignore(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except Exception:
        pass


def check_restart(policy):
    name, _, count = policy.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped") or (count and (name != "on-failure" or not count.isdigit())):
        raise SpecError(f"invalid restart policy {policy!r}: want no, always, on-failure[:N] or unless-stopped")


def _log_opts(log_opts):
    from corral.containers.spec import parse_size
    max_size, max_file = LOG_MAX_SIZE, LOG_MAX_FILE
    for k, v in log_opts.items():
        if k == "max-size":
            max_size = parse_size(v, "log max-size")
            if max_size <= 0:
                raise SpecError(f"invalid log max-size {v!r}: must be positive")
        elif k == "max-file":
            if not str(v).isdigit() or int(v) < 1:
                raise SpecError(f"invalid log max-file {v!r}: want a positive integer")
            max_file = int(v)
        else:
            raise SpecError(f"unknown log option {k!r}: known are max-size and max-file")
    return max_size, max_file


def _volume_mounts(opts, data_root, namespace):
    """OCI mounts of the -v/--mount requests (corral.volumes.mount_for: named volumes made on
    first use, bind sources that must exist, tmpfs) and what the volumes label records."""
    if not opts.mounts:
        return [], []
    from corral import volumes
    out, label = [], []
    for m in opts.mounts:
        try:
            out.append(volumes.mount_for(m, data_root=data_root, namespace=namespace))
        except (volumes.VolumeError, ValueError) as e:  # one line for a person
            raise SpecError(str(e)) from None
        if m.type == "volume":
            label.append({"name": m.source, "target": m.target, "readonly": m.readonly})
    return out, label


class Container:
    """One container record, with its task's state read when asked."""

    def __init__(self, client, record, data_root, task=None):
        self.client = client
        self.record = record
        self.data_root = data_root
        self._task = task  # None: not read yet; False: no task

    # -- what it is

    @property
    def id(self):
        return self.record.id

    @property
    def name(self):
        return self.record.labels.get(L.NAME, self.record.id[:12])

    @property
    def labels(self):
        return dict(self.record.labels)

    @property
    def image(self):
        return self.record.image

    def spec(self):
        return json.loads(self.record.spec.value)

    @property
    def dir(self):
        return os.path.join(self.data_root, "containers", self.client.namespace, self.id)

    @property
    def log_path(self):
        return os.path.join(self.dir, f"{self.id}-json.log")

    @property
    def log_uri(self):
        return self.record.labels.get(L.LOG_URI, "")

    def task(self, refresh=False):
        """The task's Process message, or None when there is none."""
        if self._task is None or refresh:
            try:
                self._task = self.client.task(self.id)
            except _client_error() as e:
                if e.code != "NOT_FOUND":
                    raise
                self._task = False
        return self._task or None

    @property
    def status(self):
        """created, running, paused, exited (docker's words)."""
        t = self.task()
        if t is None:
            return "exited" if self._recorded_exit() else "created"
        from corral.api.containerd.types import task_pb2
        s = task_pb2.Status.Name(t.status).lower()
        return {"stopped": "exited", "pausing": "paused", "unknown": "created"}.get(s, s)

    @property
    def pid(self):
        t = self.task()
        return t.pid if t is not None and self.status in ("running", "paused") else 0

    @property
    def exit_code(self):
        t = self.task()
        if t is None:
            rec = self._recorded_exit()
            return rec[0] if rec else None
        return t.exit_status if self.status == "exited" else None

    @property
    def finished_at(self):
        """When the last run ended (unix seconds, float), or None."""
        t = self.task()
        if t is None:
            rec = self._recorded_exit()
            return rec[1] if rec else None
        return t.exited_at.seconds + t.exited_at.nanos / 1e9 if self.status == "exited" else None

    def _recorded_exit(self):
        try:
            code, at = self.record.labels.get(L.EXIT, "").split()
            return int(code), float(at)
        except ValueError:
            return None

    def reload(self):
        self.record = self.client.container(self.id)
        self._task = None
        return self

    # -- lifecycle

    def start(self, io=None, created=None):
        """Start the container's task. Its output goes to the container's JSON log; io: a
        stdio.FifoIO for stdin, or for a terminal (whose output then comes through io).
        created(): called once the task exists, before it starts (e.g. to ask for its exit)."""
        if self._task is not False and self.task(refresh=True) is not None:
            if self.status in ("running", "paused"):
                raise ContainerError(f"container {self.name} is already running")
            self.client.delete_task(self.id)
        if self.record.labels.get(L.RESTART_POLICY) and self.record.labels.get(L.RESTART_STATUS) != "running":
            self.client.update_container_labels(self.id, {L.RESTART_STATUS: "running"})
        if io is not None and io.terminal:
            p = io.paths()
            self.client.create_task(self.id, p["stdin"], p["stdout"], p["stderr"], True)
        else:
            # output to the JSON log (attached runs follow it); stdin through io's FIFO
            stdin = io.paths()["stdin"] if io is not None else ""
            self.client.create_task(self.id, stdin, self.log_uri, self.log_uri, self.record.labels.get(L.TTY) == "1")
        try:
            if created is not None:
                created()
            pid = self.client.start_task(self.id)
        except BaseException:
            _ignore(self.client.delete_task, self.id)
            raise
        self._task = None
        return pid

    def kill(self, signal="SIGKILL", all=False):
        sig = parse_signal(signal)
        if self.status not in ("running", "paused"):
            raise ContainerError(f"container {self.name} is not running")
        self.client.kill(self.id, sig, all=all)

    def stop(self, timeout=10):
        """SIGTERM (or the image's stop signal), then SIGKILL after `timeout` seconds."""
        if not self.record.labels.get(L.RESTART_POLICY):
            return self._stop_task(timeout)
        self.client.update_container_labels(self.id, {L.RESTART_STATUS: "stopped"})
        # a restart the daemon decided on just before the label changed may still come: watch
        # for it a little while and stop that run too
        code = self._stop_task(timeout)
        deadline = time.monotonic() + RESTART_SETTLE
        while time.monotonic() < deadline:
            time.sleep(0.1)
            self._task = None
            if self.status in ("running", "paused"):
                code = self._stop_task(timeout)
                deadline = time.monotonic() + RESTART_SETTLE
        return code

    def _stop_task(self, timeout):
        self._task = None
        if self.status not in ("running", "paused"):
            code = self.exit_code
            if self.task() is not None:  # exited by itself: its network is still held
                self._release_task(code)
            return code
        fut = self.client.wait_task_future(self.id)
        try:
            self.client.kill(self.id, parse_signal(self.record.labels.get(L.STOP_SIGNAL) or "SIGTERM"))
        except _client_error():
            pass
        try:
            code = fut.result(timeout=timeout).exit_status
        except Exception:
            try:
                self.client.kill(self.id, _signal.SIGKILL, all=True)
            except _client_error():
                pass
            code = fut.result(timeout=30).exit_status
        self._release_task(code)
        return code

    def _release_task(self, code):
        """After stop: keep the exit in a label and delete the task, so its poststop hooks
        release the network (namespace, address, ports) as they do at rm."""
        self.record = self.client.update_container_labels(self.id, {L.EXIT: f"{code} {time.time():.3f}"})
        try:
            self.client.delete_task(self.id)
        except _client_error() as e:
            if e.code != "NOT_FOUND":
                raise
        self._task = None

    def wait(self, timeout=None):
        """The exit status once the task exits (at once if it has)."""
        if self.task(refresh=True) is None:
            if self._recorded_exit():
                return self._recorded_exit()[0]
            raise ContainerError(f"container {self.name} has not been started")
        status, _ = self.client.wait_task(self.id, timeout=timeout)
        self._task = None
        return status

    def exec(self, command, *, env=(), workdir="", user="", tty=False, io=None, exec_id=None):
        """Start a process in the running container; returns its exec id (wait with
        wait_exec). io: a stdio.FifoIO, or None for no stdio."""
        from corral.containers import spec as specmod
        if self.status != "running":
            raise ContainerError(f"container {self.name} is not running")
        proc = dict(self.spec()["process"])
        proc["args"] = list(command)
        proc["terminal"] = tty
        base = [e for e in proc.get("env", [])]
        proc["env"] = specmod.merge_env(base, specmod.expand_env(env), self.record.labels.get(L.HOSTNAME, ""), tty)
        if workdir:
            proc["cwd"] = workdir
        if user:
            mounts = self.client.snapshot_mounts(self.id, self.record.snapshotter or "overlayfs")
            uid, gid, extra = specmod.resolve_user(user, specmod.lookup_dirs(mounts))
            proc["user"] = {"uid": uid, "gid": gid, **({"additionalGids": extra} if extra else {})}
        exec_id = exec_id or "exec-" + os.urandom(6).hex()
        p = io.paths() if io is not None else {"stdin": "", "stdout": "", "stderr": "", "terminal": tty}
        self.client.exec_process(self.id, exec_id, proc, p["stdin"], p["stdout"], p["stderr"], tty)
        return exec_id

    def logs(self):
        """The container's output so far (stdout and stderr interleaved), as text."""
        from corral import logs
        return "".join(e.log for e in logs.read(self.log_path))

    def top(self):
        """(pid, command line) of each process in the container."""
        out = []
        for p in self.client.pids(self.id):
            try:
                with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                cmd = ""
            out.append((p.pid, cmd))
        return out

    def remove(self, force=False, exited=False):
        """Remove the task, the record, the snapshot and the container's files. exited: the
        caller saw the task exit (its Wait answered), so it is not looked up first."""
        task = True if exited else self.task(refresh=True)
        if not exited and self.status in ("running", "paused"):
            if not force:
                raise ContainerError(f"container {self.name} is running: stop it first or use rm -f")
            if self.record.labels.get(L.RESTART_POLICY):
                self.client.update_container_labels(self.id, {L.RESTART_STATUS: "stopped"})
            fut = self.client.wait_task_future(self.id)
            _ignore(self.client.kill, self.id, _signal.SIGKILL, all=True)
            try:
                fut.result(timeout=30)
            except Exception:
                pass
        if task is not None:
            try:
                self.client.delete_task(self.id)
            except _client_error() as e:
                if e.code != "NOT_FOUND":
                    raise
        # the record and the snapshot are asked to go at once (two calls in flight on the one
        # connection; the snapshot does not depend on the record), the files go meanwhile
        c = self.client
        record = c._future("containers", "Delete", c._pb("containers").DeleteContainerRequest(id=self.id), timeout=0)
        snapshot = c._future("snapshots", "Remove", c._pb("snapshots").RemoveSnapshotRequest(
            snapshotter=self.record.snapshotter or SNAPSHOTTER, key=self.id), timeout=0)
        remove_tree(self.dir)
        try:
            _ignore(snapshot.result)
            record.result()
        except _client_error() as e:
            if e.code != "NOT_FOUND":
                raise

    # -- inspect

    def inspect(self):
        """docker inspect's essentials."""
        spec = self.spec()
        proc = spec.get("process", {})
        t = self.task()
        status = self.status
        created = self.record.created_at
        labels = self.labels
        return {
            "Id": self.id,
            "Name": "/" + self.name,
            "Created": _rfc3339(created.seconds, created.nanos),
            "Path": (proc.get("args") or [""])[0],
            "Args": (proc.get("args") or [])[1:],
            "State": {
                "Status": status,
                "Running": status == "running",
                "Paused": status == "paused",
                "Pid": t.pid if t is not None and status in ("running", "paused") else 0,
                "ExitCode": self.exit_code or 0,
                "FinishedAt": _rfc3339(int(self.finished_at), int(self.finished_at % 1 * 1e9))
                if self.finished_at is not None else "",
            },
            "Image": self.image,
            "LogPath": self.log_path,
            "RestartPolicy": labels.get(L.RESTART_POLICY, "no"),
            "Driver": self.record.snapshotter,
            "Runtime": self.record.runtime.name,
            "Mounts": [m for m in spec.get("mounts", []) if m.get("type") == "bind"
                       and m["destination"] not in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")],
            "Config": {
                "Hostname": spec.get("hostname", ""),
                "User": f"{proc.get('user', {}).get('uid', 0)}:{proc.get('user', {}).get('gid', 0)}",
                "Env": proc.get("env", []),
                "Cmd": proc.get("args", []),
                "WorkingDir": proc.get("cwd", "/"),
                "Tty": bool(proc.get("terminal")),
                "OpenStdin": labels.get(L.STDIN_OPEN) == "1",
                "Labels": {k: v for k, v in labels.items() if not k.startswith(("corral/", "containerd.io/"))},
            },
            "HostConfig": {
                "Memory": spec.get("linux", {}).get("resources", {}).get("memory", {}).get("limit", 0),
                "NanoCpus": int(spec.get("linux", {}).get("resources", {}).get("cpu", {}).get("quota", 0) * 10000),
                "PidsLimit": spec.get("linux", {}).get("resources", {}).get("pids", {}).get("limit", 0),
                "ReadonlyRootfs": bool(spec.get("root", {}).get("readonly")),
                "Privileged": any(d.get("allow") and not d.get("type")
                                  for d in spec.get("linux", {}).get("resources", {}).get("devices", [])),
                "NetworkMode": json.loads(labels.get(L.NETWORKS, '["none"]'))[0],
                "PortBindings": json.loads(labels.get(L.PORTS, "[]")),
            },
            "NetworkSettings": {"Networks": json.loads(labels.get(L.NETWORKS, "[]"))},
        }


def parse_signal(sig):
    if isinstance(sig, int):
        return sig
    s = str(sig).upper()
    if s.isdigit():
        n = int(s)
        if not 0 < n < 65:
            raise ContainerError(f"invalid signal {sig!r}")
        return n
    if not s.startswith("SIG"):
        s = "SIG" + s
    try:
        return int(_signal.Signals[s])
    except KeyError:
        raise ContainerError(f"invalid signal {sig!r}: unknown name") from None


def _rfc3339(seconds, nanos):
    if not seconds:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"

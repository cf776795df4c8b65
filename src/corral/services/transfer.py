"""Transfers inside the daemon: pull, push, import, export and a login check, with the image
library (parallel fetch, streaming unpack) working on the namespace's view of the content
store and snapshotters. The gRPC service is corral's own extension,
corral.services.transfer.v1.Transfer; progress goes back as a server stream.

The local object `Transfers` does the work; each operation holds a lease (with an expiry, so a
crashed daemon's leases lapse) until its image is recorded, so a GC pass in the middle does
not take what it fetched.
"""

import datetime
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid

from corral.api.containerd.services.images.v1 import images_pb2
from corral.api.corral.services.transfer.v1 import transfer_pb2, transfer_pb2_grpc

from .errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ServiceError
from .grpcutil import namespace, rpc

log = logging.getLogger("corrald")

LEASE_EXPIRE = "containerd.io/gc.expire"
LEASE_TTL = 3600                # seconds a transfer's lease lives if the daemon dies
PROGRESS_INTERVAL = 0.1         # seconds between two "downloading" updates of one blob
CHUNK = 1 << 20


class PermissionDenied(ServiceError):
    grpc_code = "PERMISSION_DENIED"


class Unavailable(ServiceError):
    grpc_code = "UNAVAILABLE"


class Cancelled(ServiceError):
    grpc_code = "CANCELLED"


# --- the namespace's view, in the shape the image library works with ------------------------

class BoundStore:
    def __init__(self, nscs, ns, lease):
        self.nscs, self.ns, self.lease = nscs, ns, lease

    def exists(self, digest):
        try:
            self.nscs.info(self.ns, digest)
            return True
        except NotFound:
            return False

    def info(self, digest):
        return self.nscs.info(self.ns, digest)

    def open(self, digest):
        return self.nscs.open(self.ns, digest)

    def writer(self, ref, total=None, expected=None):
        return self.nscs.writer(self.ns, ref, total, expected, self.lease)

    def update(self, digest, labels, fieldpaths=None):
        return self.nscs.update(self.ns, digest, labels, fieldpaths)


class BoundSnapshotter:
    def __init__(self, nss, ns, lease):
        self.nss, self.ns, self.lease = nss, ns, lease
        self.name = nss.name
        self.root = nss.backend.root

    def prepare(self, key, parent="", labels=None):
        return self.nss.prepare(self.ns, key, parent, labels, self.lease)

    def view(self, key, parent="", labels=None):
        return self.nss.view(self.ns, key, parent, labels, self.lease)

    def commit(self, name, key, labels=None):
        return self.nss.commit(self.ns, name, key, labels, self.lease)

    def mounts(self, key):
        return self.nss.mounts(self.ns, key)

    def stat(self, key):
        return self.nss.stat(self.ns, key)

    def remove(self, key):
        return self.nss.remove(self.ns, key)


# --- errors a person can act on -------------------------------------------------------------

def _registry_error(e):
    from corral.remotes.registry import RegistryError
    while e is not None and not isinstance(e, RegistryError):
        e = e.__context__
    return e


def _pull_error(exc, ref, registry):
    """docker's wording for the common failures; the library's message otherwise."""
    from corral.remotes.registry import RegistryError
    reg = _registry_error(exc)
    if reg is None:
        return FailedPrecondition(str(exc))
    status, code = reg.status, reg.code
    if status == 404 and not code:
        # a HEAD answer has no body: ask again with GET to learn which name is unknown
        try:
            registry.fetch_manifest(ref, ref.object)
        except RegistryError as again:
            status, code = again.status or status, again.code
    name = ref.familiar()
    if status == 404 and code in ("MANIFEST_UNKNOWN", ""):
        return NotFound(f"manifest for {name} not found: manifest unknown")
    if status in (401, 403) or code in ("NAME_UNKNOWN", "UNAUTHORIZED", "DENIED"):
        from corral.images.reference import Reference
        repo = Reference(ref.domain, ref.path).familiar()
        return PermissionDenied(f"pull access denied for {repo}, repository does not exist or may require "
                                "'corral login'")
    if status == 404:
        return NotFound(str(exc))
    return Unavailable(str(exc))


def label_references(store, desc, snapshotter_name, chains):
    """containerd's GC references from `desc` down: an index to its manifests in the store, a
    manifest to its config and layers, a config to its unpacked snapshot (chains: config
    digest -> chain ID). Without them a GC pass keeps the image's root blob only."""
    import json
    from corral.images import mediatypes
    mt = desc["mediaType"]
    if not (mediatypes.is_index(mt) or mediatypes.is_manifest(mt)):
        return
    with store.open(desc["digest"]) as f:
        doc = json.loads(f.read())
    labels = {}
    if mediatypes.is_index(mt):
        for i, m in enumerate(doc.get("manifests", [])):
            if store.exists(m["digest"]):
                labels[f"containerd.io/gc.ref.content.m.{i}"] = m["digest"]
                label_references(store, {k: m[k] for k in ("mediaType", "digest", "size")}, snapshotter_name,
                                 chains)
    else:
        cfg = doc["config"]["digest"]
        labels["containerd.io/gc.ref.content.config"] = cfg
        for i, layer in enumerate(doc.get("layers", [])):
            labels[f"containerd.io/gc.ref.content.l.{i}"] = layer["digest"]
        if chains.get(cfg):
            key = f"containerd.io/gc.ref.snapshot.{snapshotter_name}"
            store.update(cfg, {key: chains[cfg]}, [f"labels.{key}"])
    if labels:
        store.update(desc["digest"], labels, [f"labels.{k}" for k in labels])


def _chains(store, images):
    """config digest -> chain ID for the platform manifests of [(name, desc)]."""
    import json
    from corral.images.importexport import _platform_manifest
    from corral.images.unpack import chain_ids
    out = {}
    for _, desc in images:
        try:
            m = _platform_manifest(store, desc)
        except Exception:
            continue
        with store.open(m["digest"]) as f:
            cfg = json.loads(f.read())["config"]["digest"]
        with store.open(cfg) as f:
            ids = chain_ids(json.loads(f.read()).get("rootfs", {}).get("diff_ids", []))
        if ids:
            out[cfg] = ids[-1]
    return out


class _Reporter:
    """Turns the library's per-blob events into Progress messages on a queue, at most one
    "downloading"/"uploading" update per blob every PROGRESS_INTERVAL; raises Cancelled in
    the transfer's threads once the client has gone."""

    def __init__(self):
        self.q = queue.Queue()
        self.cancelled = threading.Event()
        self._last = {}

    def __call__(self, kind, desc, status, offset):
        if self.cancelled.is_set():
            raise Cancelled("the client cancelled the transfer")
        digest = desc.get("digest", "")
        if status in ("downloading", "uploading") and offset:
            now = time.monotonic()
            if now - self._last.get(digest, 0) < PROGRESS_INTERVAL:
                return
            self._last[digest] = now
        self.q.put(transfer_pb2.Progress(kind=kind, digest=digest, status=status,
                                         total=desc.get("size") or 0, offset=offset))

    def put(self, **fields):
        self.q.put(transfer_pb2.Progress(**fields))


class Transfers:
    def __init__(self, db, content_local, snapshots_local, images_local, tmp_dir, hosts=None, workers=4,
                 changed=None):
        self.db = db
        self.nscs = content_local.nscs
        self.snapshotters = snapshots_local.snapshotters
        self.images = images_local
        self.tmp_dir = tmp_dir
        self.hosts = hosts or {}         # host -> HostConfig from the daemon's config
        self.workers = workers
        self.changed = changed or (lambda: None)

    # -- plumbing

    def registry(self, domain, opts):
        """A registry client for one request: the daemon's host config, with the request's
        plain-http/skip-verify and credentials on top."""
        import dataclasses
        from corral.remotes.registry import HostConfig, Registry
        hosts = dict(self.hosts)
        cfg = dataclasses.replace(hosts.get(domain) or HostConfig())
        if opts is not None:
            cfg.plain_http = cfg.plain_http or opts.plain_http
            cfg.skip_verify = cfg.skip_verify or opts.skip_verify
        hosts[domain] = cfg
        creds = {domain: (opts.username, opts.password)} if opts is not None and opts.username else {}
        return Registry(hosts=hosts, credentials=creds)

    def _snapshotter(self, name):
        name = name or "overlayfs"
        sn = self.snapshotters.get(name)
        if sn is None:
            raise InvalidArgument(f"snapshotter {name!r} is not available (have: {', '.join(sorted(self.snapshotters))})")
        return sn

    def _lease(self, ns):
        lease_id = f"transfer-{uuid.uuid4().hex}"
        expire = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=LEASE_TTL)
        self.db.create_lease(ns, lease_id, {LEASE_EXPIRE: expire.strftime("%Y-%m-%dT%H:%M:%SZ")})
        return lease_id

    def _drop_lease(self, ns, lease_id):
        try:
            self.db.delete_lease(ns, lease_id)
        except NotFound:
            pass
        self.changed()

    def record(self, ns, name, desc):
        """Create the image record, or point an existing one at the new target."""
        img = images_pb2.Image(name=name)
        img.target.media_type = desc["mediaType"]
        img.target.digest = desc["digest"]
        img.target.size = desc["size"]
        try:
            return self.images.create(ns, img)
        except AlreadyExists:
            return self.images.update(ns, img, ["target"])

    def _descriptor(self, ns, name):
        from corral.images.reference import ReferenceError, parse
        try:
            full = str(parse(name))
        except ReferenceError as e:
            raise InvalidArgument(str(e)) from None
        try:
            t = self.images.get(ns, full).target
        except NotFound:
            raise NotFound(f"no such image: {name}") from None
        return full, {"mediaType": t.media_type, "digest": t.digest, "size": t.size}

    # -- operations

    def pull(self, ns, req, report):
        from corral.images.errors import ImageError
        from corral.images.pull import pull
        from corral.images.reference import ReferenceError, parse
        try:
            ref = parse(req.reference)
        except ReferenceError as e:
            raise InvalidArgument(str(e)) from None
        sn = None if req.skip_unpack else self._snapshotter(req.snapshotter)
        registry = self.registry(ref.domain, req.registry if req.HasField("registry") else None)
        lease = self._lease(ns)
        try:
            report.put(kind="image", name=str(ref), status="resolving")
            try:
                r = pull(ref, BoundStore(self.nscs, ns, lease), registry,
                         BoundSnapshotter(sn, ns, lease) if sn else None, platform=req.platform or None,
                         workers=self.workers, snapshotter_name=sn.name if sn else "overlayfs",
                         events=report)
            except (ImageError, ValueError) as e:
                raise _pull_error(e, ref, registry) if not isinstance(e, ServiceError) else e from None
            self.record(ns, r.name, r.target)
        finally:
            registry.close()
            self._drop_lease(ns, lease)
        report.put(kind="image", name=r.name, digest=r.target["digest"], status="done")

    def push(self, ns, req, report):
        from corral.images.errors import ImageError
        from corral.images.push import push
        from corral.images.reference import ReferenceError, parse
        name, desc = self._descriptor(ns, req.reference)
        try:
            target = parse(req.target or name)
        except ReferenceError as e:
            raise InvalidArgument(str(e)) from None
        registry = self.registry(target.domain, req.registry if req.HasField("registry") else None)
        try:
            report.put(kind="image", name=str(target), digest=desc["digest"], status="pushing")
            try:
                push(target, desc, BoundStore(self.nscs, ns, None), registry, workers=self.workers,
                     events=report)
            except ImageError as e:
                reg = _registry_error(e)
                if reg is not None and reg.status in (401, 403):
                    raise PermissionDenied(f"push access denied for {target.familiar()}: {reg}; "
                                           "log in with `corral login`") from None
                raise Unavailable(str(e)) from None
        finally:
            registry.close()
        report.put(kind="image", name=str(target), digest=desc["digest"], status="done")

    def import_archive(self, ns, chunks):
        """chunks: an iterator of ImportChunk. Returns [(name, descriptor)]."""
        from corral.images.errors import ImageError
        from corral.images.importexport import load
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="import-", suffix=".tar", dir=self.tmp_dir)
        first = None
        try:
            with os.fdopen(fd, "wb") as f:
                for c in chunks:
                    if first is None:
                        first = c
                    f.write(c.data)
            if first is None or os.path.getsize(path) == 0:
                raise InvalidArgument("load: the input is empty; give a docker-archive or an OCI archive")
            import tarfile
            if not tarfile.is_tarfile(path):
                raise InvalidArgument("load: the input is not a tar archive; give a docker-archive or an OCI "
                                      "archive (what `corral save` or `docker save` writes)")
            sn = self._snapshotter(first.snapshotter)
            lease = self._lease(ns)
            try:
                try:
                    images = load(path, BoundStore(self.nscs, ns, lease), BoundSnapshotter(sn, ns, lease),
                                  platform=first.platform or None, base_name=first.base_name or None)
                except ImageError as e:
                    raise InvalidArgument(str(e).replace(path, "the archive").splitlines()[0]) from None
                except (ValueError, KeyError, TypeError) as e:
                    raise InvalidArgument(f"load: the archive is malformed ({type(e).__name__}: {e})") from None
                store = BoundStore(self.nscs, ns, lease)
                chains = _chains(store, images)
                for name, desc in images:
                    label_references(store, desc, sn.name, chains)
                    if name:
                        self.record(ns, name, desc)
            finally:
                self._drop_lease(ns, lease)
            return images
        finally:
            os.unlink(path)

    def export(self, ns, req):
        """Yields the archive's bytes in chunks."""
        from corral.images.errors import ImageError
        from corral.images.importexport import export_docker, export_oci
        if not req.names:
            raise InvalidArgument("save: name at least one image")
        fmt = req.format or "docker"
        if fmt not in ("docker", "oci"):
            raise InvalidArgument(f"save: unknown format {fmt!r}: use docker or oci")
        images = [self._descriptor(ns, n) for n in req.names]
        store = BoundStore(self.nscs, ns, None)
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        d = tempfile.mkdtemp(prefix="export-", dir=self.tmp_dir)
        try:
            out = os.path.join(d, "image.tar")
            try:
                if fmt == "oci":
                    export_oci(images, store, out)
                else:
                    export_docker(images, store, out, platform=req.platform or None)
            except ImageError as e:
                raise FailedPrecondition(f"save: {e}") from None
            with open(out, "rb") as f:
                while data := f.read(CHUNK):
                    yield data
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def check_auth(self, req):
        from corral.remotes.registry import RegistryError
        host = req.host or "docker.io"
        registry = self.registry(host, req.registry if req.HasField("registry") else None)
        try:
            return registry.check_auth(host)
        except RegistryError as e:
            if e.status in (401, 403):
                raise PermissionDenied(str(e)) from None
            raise Unavailable(str(e)) from None
        finally:
            registry.close()


def _run_streaming(context, work, report):
    """Run `work()` in a thread, yielding the reporter's messages until it ends; the client
    going away cancels it."""
    done = object()
    failure = []

    def target():
        try:
            work()
        except BaseException as e:
            failure.append(e)
        finally:
            report.q.put(done)

    t = threading.Thread(target=target, name="transfer", daemon=True)
    t.start()
    try:
        while True:
            try:
                msg = report.q.get(timeout=0.5)
            except queue.Empty:
                if not context.is_active():
                    report.cancelled.set()
                    break
                continue
            if msg is done:
                break
            yield msg
    finally:
        report.cancelled.set()
    t.join()
    if failure:
        raise failure[0]


class TransferService(transfer_pb2_grpc.TransferServicer):
    def __init__(self, local):
        self.local = local

    @rpc
    def Pull(self, request, context):
        ns = namespace(context)
        report = _Reporter()
        yield from _run_streaming(context, lambda: self.local.pull(ns, request, report), report)

    @rpc
    def Push(self, request, context):
        ns = namespace(context)
        report = _Reporter()
        yield from _run_streaming(context, lambda: self.local.push(ns, request, report), report)

    @rpc
    def Import(self, request_iterator, context):
        images = self.local.import_archive(namespace(context), request_iterator)
        return transfer_pb2.ImportResponse(images=[transfer_pb2.ImportedImage(name=n, digest=d["digest"])
                                                   for n, d in images])

    @rpc
    def Export(self, request, context):
        for data in self.local.export(namespace(context), request):
            yield transfer_pb2.ExportChunk(data=data)

    @rpc
    def CheckAuth(self, request, context):
        return transfer_pb2.CheckAuthResponse(status=self.local.check_auth(request))

    def add_to_server(self, server):
        transfer_pb2_grpc.add_TransferServicer_to_server(self, server)

"""The Python client of corrald (and of containerd: the same gRPC API).

    from corral.client import Client
    with Client("/run/corral/corrald.sock", namespace="default") as c:
        print(c.version())
        for ctr in c.containers.list(all=True):
            print(ctr.id, ctr.name, ctr.status)
        ctr = c.containers.run("busybox", ["echo", "hi"], name="hello")  # detached
        print(ctr.wait(), ctr.logs())
        ctr.remove(force=True)

The collections `images` and `containers` (corral.containers.api) are the high-level surface;
the other methods are the API's calls one for one and return its protobuf messages. Errors are
`ClientError` with the gRPC status code name in `.code` ("NOT_FOUND", "ALREADY_EXISTS", ...).
"""

DEFAULT_ADDRESS = "/run/corral/corrald.sock"

from corral.client_wire import ClientError  # noqa: E402 (the one error type; .code, .message)
from corral.client_images import ImageTransfers  # noqa: E402 (pull/push/load/save/login)


class Client(ImageTransfers):
    def __init__(self, address=DEFAULT_ADDRESS, namespace="default", timeout=30.0):
        from corral.client_wire import Channel
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._channel = Channel(address)  # corral.client_wire: gRPC over HTTP/2, no grpcio
        self._methods = {}
        self.lease = None

    # -- plumbing

    def _method(self, service, method):
        """(path, response class) of a call, e.g. ("/containerd.services.tasks.v1.Tasks/Wait", WaitResponse)."""
        key = (service, method)
        m = self._methods.get(key)
        if m is None:
            import importlib
            from google.protobuf.message_factory import GetMessageClass
            module, name = _SERVICES[service]
            svc = importlib.import_module(module).DESCRIPTOR.services_by_name[name]
            m = self._methods[key] = (f"/{svc.full_name}/{method}",
                                      GetMessageClass(svc.methods_by_name[method].output_type).FromString)
        return m

    def _pb(self, name):
        import importlib
        return importlib.import_module(_SERVICES[name][0])

    def _metadata(self, namespaced=True):
        if not namespaced:
            return ()
        md = [("containerd-namespace", self.namespace)]
        if self.lease:
            md.append(("containerd-lease", self.lease))
        return md

    def _call(self, service, method, request, namespaced=True, stream=False, timeout=0):
        """A unary call (its answer), or with stream=True a server stream (an iterator of
        answers with .cancel()). timeout: seconds, None for none, 0 for the client's."""
        path, decode = self._method(service, method)
        md = self._metadata(namespaced)
        if stream:
            return self._channel.stream(path, request.SerializeToString(), md, decode, timeout or None)
        return decode(self._channel.unary(path, request.SerializeToString(), md,
                                          self.timeout if timeout == 0 else timeout))

    def _future(self, service, method, request, timeout=None):
        """A call sent now whose answer is taken later: .result(timeout) (raises ClientError as
        _call does, FutureTimeoutError if it has not come by then), .cancel(). timeout: the
        call's own deadline (0: the client's), as _call's."""
        path, decode = self._method(service, method)
        return self._channel.future(path, request.SerializeToString(), self._metadata(), decode,
                                    self.timeout if timeout == 0 else timeout)

    def close(self):
        self._channel.close()

    # -- leases: what is made under one (client.lease set) is safe from garbage collection
    # until the lease goes, so a half-made container cannot lose its snapshot to a GC pass

    def create_lease(self, expire_seconds=3600):
        return self._call("leases", "Create", self._lease_request(expire_seconds)).lease.id

    def _lease_request(self, expire_seconds):
        import os
        import time
        pb = self._pb("leases")
        labels = {"containerd.io/gc.expire": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expire_seconds))}
        return pb.CreateRequest(id=f"corral-{os.urandom(8).hex()}", labels=labels)

    def delete_lease(self, lease_id):
        pb = self._pb("leases")
        self._call("leases", "Delete", pb.DeleteRequest(id=lease_id))

    def with_lease(self, lease_id):
        """A client whose calls all carry the lease."""
        other = object.__new__(Client)
        other.__dict__.update(self.__dict__)
        other.lease = lease_id
        return other

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def with_namespace(self, namespace):
        """A client for another namespace on the same connection."""
        other = object.__new__(Client)
        other.__dict__.update(self.__dict__)
        other.namespace = namespace
        return other

    # -- version and plugins

    def version(self):
        from google.protobuf import empty_pb2
        r = self._call("version", "Version", empty_pb2.Empty(), namespaced=False)
        return {"version": r.version, "revision": r.revision}

    def plugins(self, *filters):
        pb = self._pb("introspection")
        return list(self._call("introspection", "Plugins", pb.PluginsRequest(filters=filters), namespaced=False).plugins)

    # -- namespaces

    def namespaces(self):
        pb = self._pb("namespaces")
        return list(self._call("namespaces", "List", pb.ListNamespacesRequest(), namespaced=False).namespaces)

    def create_namespace(self, name, labels=None):
        pb = self._pb("namespaces")
        ns = pb.Namespace(name=name, labels=labels or {})
        # with the client's namespace in the metadata, as ctr sends it: containerd publishes the
        # event under it and refuses the call without one
        return self._call("namespaces", "Create", pb.CreateNamespaceRequest(namespace=ns)).namespace

    def delete_namespace(self, name):
        pb = self._pb("namespaces")
        self._call("namespaces", "Delete", pb.DeleteNamespaceRequest(name=name))

    # -- high-level collections (corral.containers.api); each is also callable as the raw
    # list it used to be: client.images() == the Image messages

    @property
    def images(self):
        from corral.containers.api import Images
        return Images(self)

    @property
    def containers(self):
        from corral.containers.api import Containers
        return Containers(self)

    @property
    def networks(self):
        from corral.cni.api import Networks
        return Networks(self)

    @property
    def volumes(self):
        from corral.volumes import Volumes
        return Volumes(self)

    # -- images

    def list_images(self, *filters):
        pb = self._pb("images")
        return list(self._call("images", "List", pb.ListImagesRequest(filters=filters)).images)

    def image(self, name):
        pb = self._pb("images")
        return self._call("images", "Get", pb.GetImageRequest(name=name)).image

    def delete_image(self, name, sync=False):
        pb = self._pb("images")
        self._call("images", "Delete", pb.DeleteImageRequest(name=name, sync=sync))

    def create_image(self, name, target, labels=None):
        """target: a types.Descriptor message (e.g. another image's .target)."""
        pb = self._pb("images")
        img = pb.Image(name=name, labels=labels or {})
        img.target.CopyFrom(target)
        return self._call("images", "Create", pb.CreateImageRequest(image=img)).image

    def update_image(self, name, target, labels=None):
        pb = self._pb("images")
        img = pb.Image(name=name, labels=labels or {})
        img.target.CopyFrom(target)
        return self._call("images", "Update", pb.UpdateImageRequest(image=img)).image

    # -- containers

    def list_containers(self, *filters):
        pb = self._pb("containers")
        return list(self._call("containers", "List", pb.ListContainersRequest(filters=filters)).containers)

    def container(self, cid):
        pb = self._pb("containers")
        return self._call("containers", "Get", pb.GetContainerRequest(id=cid)).container

    def create_container(self, cid, spec, runtime="io.containerd.runc.v2", image="", snapshotter="",
                         snapshot_key="", labels=None):
        """spec: the OCI runtime spec as a dict (or JSON bytes)."""
        import json
        from google.protobuf import any_pb2
        pb = self._pb("containers")
        data = spec if isinstance(spec, bytes) else json.dumps(spec).encode()
        c = pb.Container(id=cid, image=image, snapshotter=snapshotter, snapshot_key=snapshot_key,
                         labels=labels or {},
                         spec=any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=data))
        c.runtime.name = runtime
        return self._call("containers", "Create", pb.CreateContainerRequest(container=c)).container

    def delete_container(self, cid):
        pb = self._pb("containers")
        self._call("containers", "Delete", pb.DeleteContainerRequest(id=cid))

    def update_container_labels(self, cid, labels):
        """Set (value) or remove (None) the given labels; returns the updated record."""
        from google.protobuf import field_mask_pb2
        pb = self._pb("containers")
        c = pb.Container(id=cid, labels={k: v for k, v in labels.items() if v is not None})
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
        return self._call("containers", "Update", pb.UpdateContainerRequest(container=c, update_mask=mask)).container

    # -- content and snapshots

    def content(self, *filters):
        pb = self._pb("content")
        out = []
        for resp in self._call("content", "List", pb.ListContentRequest(filters=filters), stream=True):
            out.extend(resp.info)
        return out

    def read_content(self, digest):
        pb = self._pb("content")
        return b"".join(r.data for r in self._call("content", "Read", pb.ReadContentRequest(digest=digest), stream=True))

    def prepare_snapshot(self, key, parent, snapshotter="overlayfs", labels=None):
        pb = self._pb("snapshots")
        req = pb.PrepareSnapshotRequest(snapshotter=snapshotter, key=key, parent=parent, labels=labels or {})
        return list(self._call("snapshots", "Prepare", req).mounts)

    def snapshot_mounts(self, key, snapshotter="overlayfs"):
        pb = self._pb("snapshots")
        return list(self._call("snapshots", "Mounts", pb.MountsRequest(snapshotter=snapshotter, key=key)).mounts)

    def stat_snapshot(self, key, snapshotter="overlayfs"):
        pb = self._pb("snapshots")
        return self._call("snapshots", "Stat", pb.StatSnapshotRequest(snapshotter=snapshotter, key=key)).info

    def remove_snapshot(self, key, snapshotter="overlayfs"):
        pb = self._pb("snapshots")
        self._call("snapshots", "Remove", pb.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))

    def snapshot_usage(self, key, snapshotter="overlayfs"):
        pb = self._pb("snapshots")
        return self._call("snapshots", "Usage", pb.UsageRequest(snapshotter=snapshotter, key=key))

    def snapshots(self, snapshotter="overlayfs", *filters):
        pb = self._pb("snapshots")
        out = []
        req = pb.ListSnapshotsRequest(snapshotter=snapshotter, filters=filters)
        for resp in self._call("snapshots", "List", req, stream=True):
            out.extend(resp.info)
        return out

    # -- tasks

    def tasks(self, filter=""):
        pb = self._pb("tasks")
        return list(self._call("tasks", "List", pb.ListTasksRequest(filter=filter)).tasks)

    def create_task(self, cid, stdin="", stdout="", stderr="", terminal=False):
        """The rootfs comes from the container's snapshot (the daemon looks it up)."""
        pb = self._pb("tasks")
        req = pb.CreateTaskRequest(container_id=cid, stdin=stdin, stdout=stdout, stderr=stderr, terminal=terminal)
        return self._call("tasks", "Create", req).pid

    def start_task(self, cid, exec_id=""):
        pb = self._pb("tasks")
        return self._call("tasks", "Start", pb.StartRequest(container_id=cid, exec_id=exec_id)).pid

    def wait_task(self, cid, exec_id="", timeout=None):
        """Block until the process exits; returns (exit_status, exited_at Timestamp)."""
        pb = self._pb("tasks")
        r = self._call("tasks", "Wait", pb.WaitRequest(container_id=cid, exec_id=exec_id), timeout=timeout)
        return r.exit_status, r.exited_at

    def wait_task_future(self, cid, exec_id=""):
        """Start waiting now (before the process can exit); .result(timeout) gives the
        WaitResponse (corral.client_wire.FutureTimeoutError if it has not come by then)."""
        pb = self._pb("tasks")
        return self._future("tasks", "Wait", pb.WaitRequest(container_id=cid, exec_id=exec_id))

    def exec_process(self, cid, exec_id, process_spec, stdin="", stdout="", stderr="", terminal=False):
        import json
        from google.protobuf import any_pb2
        pb = self._pb("tasks")
        spec = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                           value=json.dumps(process_spec).encode())
        self._call("tasks", "Exec", pb.ExecProcessRequest(container_id=cid, exec_id=exec_id, spec=spec, stdin=stdin,
                                                         stdout=stdout, stderr=stderr, terminal=terminal))

    def delete_process(self, cid, exec_id):
        pb = self._pb("tasks")
        return self._call("tasks", "DeleteProcess", pb.DeleteProcessRequest(container_id=cid, exec_id=exec_id))

    def close_stdin(self, cid, exec_id=""):
        pb = self._pb("tasks")
        self._call("tasks", "CloseIO", pb.CloseIORequest(container_id=cid, exec_id=exec_id, stdin=True))

    def resize_pty(self, cid, width, height, exec_id=""):
        pb = self._pb("tasks")
        self._call("tasks", "ResizePty", pb.ResizePtyRequest(container_id=cid, exec_id=exec_id, width=width, height=height))

    def pids(self, cid):
        pb = self._pb("tasks")
        return list(self._call("tasks", "ListPids", pb.ListPidsRequest(container_id=cid)).processes)

    def metrics(self, *filters):
        pb = self._pb("tasks")
        return list(self._call("tasks", "Metrics", pb.MetricsRequest(filters=filters)).metrics)

    def task(self, cid, exec_id=""):
        pb = self._pb("tasks")
        return self._call("tasks", "Get", pb.GetRequest(container_id=cid, exec_id=exec_id)).process

    def kill(self, cid, signal=15, exec_id="", all=False):
        pb = self._pb("tasks")
        self._call("tasks", "Kill", pb.KillRequest(container_id=cid, exec_id=exec_id, signal=signal, all=all))

    def delete_task(self, cid):
        pb = self._pb("tasks")
        return self._call("tasks", "Delete", pb.DeleteTaskRequest(container_id=cid))

    # -- events

    def events(self, *filters):
        """An iterator of event envelopes (cancel it with .cancel())."""
        return self.subscribe(*filters)

    def subscribe(self, *filters):
        """An iterator of event envelopes (cancel it with .cancel())."""
        pb = self._pb("events")
        return self._call("events", "Subscribe", pb.SubscribeRequest(filters=filters), stream=True)


_API = "corral.api.containerd.services."
_SERVICES = {  # name -> (pb2 module, service)
    "version": (_API + "version.v1.version_pb2", "Version"),
    "introspection": (_API + "introspection.v1.introspection_pb2", "Introspection"),
    "namespaces": (_API + "namespaces.v1.namespace_pb2", "Namespaces"),
    "images": (_API + "images.v1.images_pb2", "Images"),
    "containers": (_API + "containers.v1.containers_pb2", "Containers"),
    "content": (_API + "content.v1.content_pb2", "Content"),
    "snapshots": (_API + "snapshots.v1.snapshots_pb2", "Snapshots"),
    "tasks": (_API + "tasks.v1.tasks_pb2", "Tasks"),
    "events": (_API + "events.v1.events_pb2", "Events"),
    "leases": (_API + "leases.v1.leases_pb2", "Leases"),
    "transfer": ("corral.api.corral.services.transfer.v1.transfer_pb2", "Transfer"),
}

"""The Python client of corrald (and of containerd: the same gRPC API).

    from corral.client import Client
    with Client("/run/corral/corrald.sock", namespace="default") as c:
        print(c.version())
        for ctr in c.containers():
            print(ctr.id, ctr.image)

Methods return the API's protobuf messages; errors are `ClientError` with the gRPC status
code name in `.code` ("NOT_FOUND", "ALREADY_EXISTS", ...).
"""

DEFAULT_ADDRESS = "/run/corral/corrald.sock"


class ClientError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class Client:
    def __init__(self, address=DEFAULT_ADDRESS, namespace="default", timeout=30.0):
        import grpc
        self._grpc = grpc
        self.address = address
        self.namespace = namespace
        self.timeout = timeout
        self._channel = grpc.insecure_channel("unix:" + address)
        self._stubs = {}

    # -- plumbing

    def _stub(self, name):
        stub = self._stubs.get(name)
        if stub is None:
            import importlib
            module, cls = _SERVICES[name]
            mod = importlib.import_module(f"corral.api.containerd.services.{module}_pb2_grpc")
            stub = self._stubs[name] = getattr(mod, cls)(self._channel)
        return stub

    def _pb(self, name):
        import importlib
        return importlib.import_module(f"corral.api.containerd.services.{_SERVICES[name][0]}_pb2")

    def _call(self, service, method, request, namespaced=True, stream=False):
        md = [("containerd-namespace", self.namespace)] if namespaced else []
        try:
            result = getattr(self._stub(service), method)(request, metadata=md, timeout=None if stream else self.timeout)
            return result
        except self._grpc.RpcError as e:
            raise ClientError(e.code().name, e.details()) from None

    def close(self):
        self._channel.close()

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
        return self._call("namespaces", "Create", pb.CreateNamespaceRequest(namespace=ns), namespaced=False).namespace

    def delete_namespace(self, name):
        pb = self._pb("namespaces")
        self._call("namespaces", "Delete", pb.DeleteNamespaceRequest(name=name), namespaced=False)

    # -- images

    def images(self, *filters):
        pb = self._pb("images")
        return list(self._call("images", "List", pb.ListImagesRequest(filters=filters)).images)

    def image(self, name):
        pb = self._pb("images")
        return self._call("images", "Get", pb.GetImageRequest(name=name)).image

    def delete_image(self, name, sync=False):
        pb = self._pb("images")
        self._call("images", "Delete", pb.DeleteImageRequest(name=name, sync=sync))

    # -- containers

    def containers(self, *filters):
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

    def subscribe(self, *filters):
        """An iterator of event envelopes (cancel it with .cancel())."""
        pb = self._pb("events")
        return self._call("events", "Subscribe", pb.SubscribeRequest(filters=filters), stream=True)


_SERVICES = {
    "version": ("version.v1.version", "VersionStub"),
    "introspection": ("introspection.v1.introspection", "IntrospectionStub"),
    "namespaces": ("namespaces.v1.namespace", "NamespacesStub"),
    "images": ("images.v1.images", "ImagesStub"),
    "containers": ("containers.v1.containers", "ContainersStub"),
    "content": ("content.v1.content", "ContentStub"),
    "snapshots": ("snapshots.v1.snapshots", "SnapshotsStub"),
    "tasks": ("tasks.v1.tasks", "TasksStub"),
    "events": ("events.v1.events", "EventsStub"),
}

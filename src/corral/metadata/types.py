"""Records of the metadata database. Times are integers, nanoseconds since the epoch."""

from dataclasses import dataclass, field


@dataclass
class Any:
    """A protobuf Any as stored: type URL and serialized bytes."""
    type_url: str = ""
    value: bytes = b""


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict = field(default_factory=dict)


@dataclass
class Namespace:
    name: str
    labels: dict = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass
class Image:
    name: str
    target: Descriptor
    labels: dict = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass
class Runtime:
    name: str
    options: Any | None = None


@dataclass
class Container:
    id: str
    runtime: Runtime
    labels: dict = field(default_factory=dict)
    image: str = ""
    spec: Any | None = None
    snapshotter: str = ""
    snapshot_key: str = ""
    extensions: dict = field(default_factory=dict)  # name -> Any
    sandbox: str = ""
    created_at: int = 0
    updated_at: int = 0


@dataclass
class ContentRef:
    """A blob as one namespace sees it: the namespace's labels on a shared blob."""
    digest: str
    labels: dict = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass
class SnapshotRef:
    """A snapshot as one namespace sees it: its key maps to the backend snapshotter's name."""
    snapshotter: str
    key: str
    name: str  # the backend's key
    parent: str = ""  # the parent's key in the same namespace
    labels: dict = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass
class Lease:
    id: str
    labels: dict = field(default_factory=dict)
    created_at: int = 0


@dataclass(frozen=True)
class Resource:
    """What a lease holds: type is "content", "ingests" or "snapshots/<snapshotter>"."""
    id: str
    type: str

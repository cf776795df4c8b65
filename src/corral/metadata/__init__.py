"""Metadata: the SQLite database of namespaces, images, containers, content and snapshot
references and leases (containerd's metadata plugin)."""

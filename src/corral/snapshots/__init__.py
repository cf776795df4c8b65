"""Snapshotters: overlayfs (default) and native (copy), with containerd's model."""

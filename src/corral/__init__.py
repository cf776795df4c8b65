"""corral: a container runtime stack for Linux, wire-compatible with containerd."""

__version__ = "0.1.0"

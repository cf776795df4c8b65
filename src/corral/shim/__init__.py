"""containerd-shim-corral-v2: containerd's shim v2 for runc-compatible runtimes.

main: the command line (start, delete, serve); service: the Task API; runtime: the OCI runtime
driver; reaper: SIGCHLD and exit statuses; stdio: FIFOs, log URIs, terminals; events: the
publisher to the daemon; mounts: the rootfs.
"""

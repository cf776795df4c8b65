"""The long-lived shim server: child subreaper, ttrpc Task service on the socket `start` bound,
events to the daemon; it exits after Shutdown once it serves no container (or when it has
served none for a while)."""

import os
import sys

PROCESS_NAME = b"corral-shim"  # /proc/PID/comm of every shim server, however it was started
IDLE_EXIT = 60.0  # a shim that never got (or lost all) its containers without a Shutdown
IDLE_CHECK = 15.0  # so an idle shim exits between IDLE_EXIT and IDLE_EXIT + IDLE_CHECK
GROUP_LINGER = 3.0  # a group's shim waits this long after its last container, for the next one


def serve(flags, sock, path, group):
    sys.modules.setdefault("ssl", None)  # asyncio imports ssl only to support TLS: not needed here
    from corral.oci.linux import syscalls as sc
    from corral.shim.loop import run

    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    set_name(PROCESS_NAME)
    one_malloc_arena()
    try:
        run(_main(flags, sock, path, group))
    finally:
        _remove_socket(path)
    return 0


_ONE_ARENA = False  # set in the zygote: its servers inherit the setting


def one_malloc_arena():
    """Threads (the loop's default executor, if anything uses it) would each get a malloc arena
    of their own: keep one, the shim is not allocation-bound."""
    global _ONE_ARENA
    if _ONE_ARENA:
        return
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
        _ONE_ARENA = True
    except (OSError, AttributeError):
        pass


def merge_identical_pages():
    """Offer this process's private writable memory to the kernel's same-page merging (KSM).
    The zygote calls it just before it forks servers, and a server now and then for the
    mappings it made since. A forked CPython copies every page it writes to (reference counts,
    the allocator), so servers end up holding many private pages identical to each other's and
    to the zygote's; ksmd, where it runs (/sys/kernel/mm/ksm/run = 1), merges those back into
    one. madvise rather than prctl(PR_SET_MEMORY_MERGE): the mark stays on these mappings, so
    the programs the servers exec (runc, the containers) never have theirs merged."""
    from corral.oci.linux import syscalls as sc

    try:
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split()
        name = fields[5] if len(fields) > 5 else ""
        if fields[1][1] != "w" or fields[1][3] != "p" or (name.startswith("[") and name != "[heap]"):
            continue  # only private writable mappings, not the stack, vdso or vvar
        start, end = (int(x, 16) for x in fields[0].split("-"))
        try:
            sc.madvise(start, end - start, sc.MADV_MERGEABLE)
        except OSError:
            return  # a kernel without KSM (EINVAL): nothing to offer


def set_name(name):
    try:
        with open("/proc/self/comm", "wb") as f:
            f.write(name)
    except OSError:
        pass


def _remove_socket(path):
    for p in (path, path + ".pid", path + ".lock"):
        try:
            os.unlink(p)
        except OSError:
            pass


SPARE_NAME = b"corral-spare"  # comm of a spare server that has no socket (no container) yet


def serve_spare(chan, take_job):
    """A spare server, forked by the zygote ahead of need: it makes its event loop and reaper
    now, then waits on `chan` (a SOCK_SEQPACKET socket) for a job, the same parameters and fds
    (socket, log) a freshly forked server gets; take_job(data, fds) applies them and returns
    (flags, sock, path, group). When its zygote goes away first, it exits."""
    sys.modules.setdefault("ssl", None)
    import asyncio

    from corral.oci.linux import syscalls as sc
    from corral.shim.loop import run

    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    set_name(SPARE_NAME)
    one_malloc_arena()
    path = None

    async def main():
        nonlocal path
        from corral.shim.reaper import Reaper

        loop = asyncio.get_running_loop()
        reaper = Reaper(loop)
        job = await _receive_job(loop, chan)
        if job is None:
            return
        flags, sock, path, group = take_job(*job)
        set_name(PROCESS_NAME)
        await _main(flags, sock, path, group, reaper)

    try:
        run(main())
    finally:
        if path:
            _remove_socket(path)
    return 0


async def _receive_job(loop, chan):
    """(data, [fds]) of the one message the zygote sends, or None at EOF."""
    import array
    import socket

    from corral.shim.reaper import wait_readable

    await wait_readable(loop, chan.fileno(), None)
    fds = array.array("i")
    try:  # close-on-exec, as the zygote received them
        data, ancdata, _, _ = chan.recvmsg(1 << 20, socket.CMSG_SPACE(2 * fds.itemsize), socket.MSG_CMSG_CLOEXEC)
    except OSError:
        return None
    finally:
        chan.close()
    for level, ctype, cdata in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            fds.frombytes(cdata[:len(cdata) - len(cdata) % fds.itemsize])
    if not data or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        return None
    return data, list(fds)


async def _main(flags, sock, path, group, reaper=None):
    import asyncio
    import signal

    from corral.shim.events import Publisher
    from corral.shim.reaper import Reaper
    from corral.shim.service import SERVICE, TaskService
    from corral.ttrpc.server import Server

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if reaper is None:
        reaper = Reaper(loop)
    publisher = Publisher(os.environ.get("TTRPC_ADDRESS", ""), flags.namespace)

    def on_empty():
        if group == flags.id:
            stop.set()
        else:
            loop.call_later(GROUP_LINGER, lambda: None if service.containers else stop.set())

    service = TaskService(loop, reaper, publisher, flags.namespace, on_empty)
    server = Server()
    server.register(SERVICE, service.methods())
    await server.serve(sock=sock)
    idle_since = loop.time()
    while not stop.is_set():
        # wake only now and then, for the idle exit: every running shim ticking each second
        # adds up on a host with many containers
        try:
            await asyncio.wait_for(stop.wait(), IDLE_CHECK)
        except asyncio.TimeoutError:
            pass
        if service.containers:
            idle_since = loop.time()
            merge_identical_pages()  # also the mappings made since the fork (about 0.5 ms)
        elif loop.time() - idle_since > IDLE_EXIT:
            break
    # stop accepting before flushing, so a concurrent `start` of the group starts a new shim
    _remove_socket(path)
    await server.close()
    await publisher.flush()
    # containerd waits for our connection to close after Shutdown: skip the interpreter's
    # orderly teardown (thread pool joins, module finalization), there is nothing left to save
    sys.stderr.flush()
    os._exit(0)


def serve_from_env(flags):
    print("containerd-shim-corral-v2: containerd starts this shim with `start`; "
          "run `containerd-shim-corral-v2 -v` for its version", file=sys.stderr)
    return 1

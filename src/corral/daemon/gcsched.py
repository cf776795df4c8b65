"""The GC scheduler: runs corral.gc.collect in the background shortly after something was
deleted (debounced, one pass at a time), or at once for a `sync` delete."""

import logging
import threading

log = logging.getLogger("corrald")


class Collector:
    def __init__(self, db, content_store, snapshotters, delay=1.0):
        self.db = db
        self.content_store = content_store
        self.snapshotters = snapshotters  # name -> backend snapshotter
        self.delay = delay
        self._lock = threading.Lock()  # one pass at a time
        self._timer = None
        self._timer_lock = threading.Lock()
        self.closed = False

    def collect(self, ns=None):
        """One synchronous pass (all namespaces; the GC is global, as containerd's)."""
        from corral import gc
        with self._lock:
            try:
                res = gc.collect(self.db, self.content_store, self.snapshotters)
            finally:
                self.db.close()  # this thread's connection; pool threads come and go
        log.debug("gc: removed %d content refs, %d blobs, %d snapshots, %d leases in %.3fs",
                  len(res.content), len(res.blobs), len(res.snapshots), len(res.leases), res.seconds)
        return res

    def schedule(self):
        with self._timer_lock:
            if self.closed:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.delay, self._run)
            self._timer.daemon = True
            self._timer.start()

    def _run(self):
        try:
            self.collect()
        except Exception as e:
            log.warning("gc pass failed: %s", e)

    def close(self):
        with self._timer_lock:
            self.closed = True
            if self._timer is not None:
                self._timer.cancel()

"""A busybox OCI image for `ctr images import`, built from the host's busybox-static (no network).

corral.busybox.make_oci_archive writes the OCI layout tar (one layer tar + config + manifest +
index.json); import_busybox loads it into a test containerd (tests.helpers.containerd.Containerd).
"""

from tests.helpers.containerd import import_busybox  # noqa: F401 (re-exported)
from corral.busybox import make_oci_archive  # noqa: F401 (re-exported)

BUSYBOX = "docker.io/library/busybox:latest"

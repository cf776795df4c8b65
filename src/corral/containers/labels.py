"""Labels on a corral container record (the daemon keeps them; a restart needs nothing else)."""

NAME = "corral/name"
NETWORKS = "corral/networks"      # JSON list of network names
PORTS = "corral/ports"            # JSON list of {hostIP, hostPort, containerPort, protocol}
LOG_URI = "corral/log-uri"
HOSTNAME = "corral/hostname"
VOLUMES = "corral/volumes"        # JSON
PLATFORM = "corral/platform"
CREATED_BY = "corral/created-by"  # "corral": containers made by the CLI or the client API
STDIN_OPEN = "corral/stdin-open"  # "1" when made with -i
TTY = "corral/tty"                # "1" when made with -t
STOP_SIGNAL = "corral/stop-signal"  # the image's StopSignal, used by stop
EXIT = "corral/exit"              # "<code> <unix time>" of the last run, kept when stop deletes its task

# containerd's restart-monitor label names
RESTART_POLICY = "containerd.io/restart.policy"
RESTART_STATUS = "containerd.io/restart.status"
RESTART_LOGURI = "containerd.io/restart.loguri"

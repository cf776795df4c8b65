"""corrald: the daemon. Plugin registry, configuration and the gRPC server wiring."""

"""One module per containerd service: a local object with the logic and a thin gRPC adapter."""

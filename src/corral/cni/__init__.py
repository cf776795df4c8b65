"""Container networking through CNI 1.0 plugins (containernetworking-plugins).

conflist: network configuration lists (loading, validation, corral's own networks);
plugins: running a plugin chain (ADD/DEL/CHECK) with the CNI environment;
cache: the result of each ADD, kept so DEL gets the same config and prevResult;
attach: one container's networks set up and torn down (the hook's work);
ports: `-p` specs; etcfiles: the container's hosts, resolv.conf and hostname;
spec: what a container's OCI spec needs for networking; hook: the OCI hook executable.
"""

"""One error type for networking problems a person can act on (bad port spec, port taken,
unknown network, plugin failure). It is a SpecError (a ValueError) of the container model, so
whoever builds a container's spec reports it like any other bad option: one line, exit 125."""

from corral.containers.spec import SpecError


class NetworkError(SpecError, ValueError):
    pass

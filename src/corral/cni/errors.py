"""One error type for networking problems a person can act on (bad port spec, port taken,
unknown network, plugin failure). A ValueError, so callers that check arguments catch it."""


class NetworkError(ValueError):
    pass

"""The runtime's one error type: a message for a person, printed as one line."""


class RuntimeFailure(Exception):
    """Raised for anything the runtime refuses or fails to do; the CLI prints it and exits 1."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code

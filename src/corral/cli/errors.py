"""The CLI's one error type: a message for a person; `main` prints it and exits 125 (docker's
code for the tool's own failures), or the code given."""


class CLIError(Exception):
    def __init__(self, message, code=125):
        super().__init__(message)
        self.code = code

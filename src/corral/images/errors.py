"""The one error type of image operations: a message for a person (what, on what, what to do)."""


class ImageError(Exception):
    pass

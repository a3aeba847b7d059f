"""Errors caused by the user's input or options: reported as one clear message, without a traceback."""


class UserError(ValueError):
    """A bad option, file, column or value; the message names it and the fix."""


class DataError(UserError):
    """Bad or missing input data."""

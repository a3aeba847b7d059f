"""Errors caused by the user's input or options: reported as one clear message, without a traceback."""


class UserError(ValueError):
    """A bad option, file, column or value; the message names it and the fix."""


class DataError(UserError):
    """Bad or missing input data."""


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line, from the exception it wraps if any (Hydra wraps the target's own)."""
    return " ".join(str(err.__cause__ or err).split())

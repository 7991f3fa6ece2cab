"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class EquigenError(Exception):
    """A user-facing error: bad input, unreachable service, unusable data folder.

    The message must be one line that says what is wrong and, where possible, what to do.
    """

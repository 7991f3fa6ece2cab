"""The one exception type the CLI turns into a one-line error and a non-zero exit, and the helpers
that keep error text to one safe line."""

# Exit codes, the same for every entry point (documented in README):
EXIT_PROBLEMS = 1  # the command ran and found problems (e.g. `verify` found leakage)
EXIT_USER_ERROR = 2  # bad input, an unusable folder, an unreachable service (click's usage errors too)
EXIT_INTERRUPTED = 130


class EquigenError(Exception):
    """A user-facing error: bad input, unreachable service, unusable data folder.

    The message must be one line that says what is wrong and, where possible, what to do.
    """


_CONTROLS = "".join(map(chr, [*range(0x00, 0x20), *range(0x7F, 0xA0)]))
_INERT = str.maketrans(_CONTROLS, " " * len(_CONTROLS))


def inert(text: object) -> str:
    """Text from outside (a server, a manifest, a shard) made safe to print with rich: C0/C1 control
    characters become spaces (no terminal escapes) and "[" is escaped (no markup)."""
    return str(text).translate(_INERT).replace("\\", "\\\\").replace("[", "\\[")


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (its type name when it has none): library errors can span pages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

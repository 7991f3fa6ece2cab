"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class EquigenError(Exception):
    """A user-facing error: bad input, unreachable service, unusable data folder.

    The message must be one line that says what is wrong and, where possible, what to do.
    """


_CONTROLS = "".join(map(chr, [*range(0x00, 0x20), *range(0x7f, 0xa0)]))
_INERT = str.maketrans(_CONTROLS, " " * len(_CONTROLS))


def inert(text: object) -> str:
    """Text from outside (a server, a manifest, a shard) made safe to print with rich: C0/C1 control
    characters become spaces (no terminal escapes) and "[" is escaped (no markup)."""
    return str(text).translate(_INERT).replace("\\", "\\\\").replace("[", "\\[")

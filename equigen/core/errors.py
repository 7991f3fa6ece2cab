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


def one_line(text: object) -> str:
    """Text with its C0/C1 control characters (escapes, newlines) turned into spaces."""
    return str(text).translate(_INERT)


def inert(text: object) -> str:
    """Text from outside (a server, a manifest, a shard) made safe to print with rich: C0/C1 control
    characters become spaces (no terminal escapes) and "[" is escaped (no markup)."""
    return one_line(text).replace("\\", "\\\\").replace("[", "\\[")


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (its type name when it has none): library errors can span pages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_number(option: str, value, lo: float | None = None, hi: float | None = None, *, integer: bool = False):
    """`value` of `option` if it is a finite number (an integer if asked) within [lo, hi]; else a one-line error.

    The one range check every numeric option goes through: NaN passes a plain `x < lo` test (`nan < 1.0` is
    False), infinity hangs a sleep, and a 23-digit integer overflows SQLite or numpy far from the flag.
    """
    import math

    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise EquigenError(f"{option} must be {kind}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EquigenError(f"{option} must be a finite number, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            span = f"between {_show(lo)} and {_show(hi)}"
        else:
            span = f"at least {_show(lo)}" if lo is not None else f"at most {_show(hi)}"
        raise EquigenError(f"{option} must be {span}, got {_show(value)}")
    return value


def _show(x) -> str:
    return f"{x:.3g}" if abs(x) >= 1e15 else str(x) if isinstance(x, int) else f"{x:g}"

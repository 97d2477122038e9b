"""Errors meant for a user, with the exit status the ``simxen`` command gives them.

Every layer may raise these; the CLI turns them into one readable line and an
exit status, never a traceback.
"""

import math


class SimxenError(Exception):
    """Base of every error simxen reports to a user."""

    exit_status = 2


class InputError(SimxenError):
    """Bad input: a scenario or profile file, a command-line value.

    The message names the file, the key and what was expected.
    """

    exit_status = 2

    def __init__(self, message, *, path=None, key=None):
        self.message = message
        self.path = path
        self.key = key
        self.message = message      #: the message without the file and key
        where = []
        if path is not None:
            where.append(str(path))
        if key is not None:
            where.append(str(key))
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class ExpectationFailed(SimxenError):
    """A scenario ran, but one of its expectations did not hold."""

    exit_status = 1


def did_you_mean(name, known, *, show=None, cutoff=0.6) -> str:
    """``"; did you mean 'X'?"`` for the one of ``known`` closest to a misspelt ``name``,
    or ``""`` when none is close, so that a caller may add its own fallback
    (``did_you_mean(...) or " (simxen metrics lists them)"``). Every "did you mean"
    simxen prints is made here, so they all read alike.

    :param known: the names ``name`` may have meant
    :param show: what the message shows for each of ``known``, when it is not the name
        itself (a metric compared by the part after its workload's name, shown whole)
    :param cutoff: the ratio of :func:`difflib.get_close_matches` a name must reach:
        0.6, difflib's own, suits short names that differ from their start (keys of
        a file); names that share a long start (``TPM2_...``, ``vtpm-...``) are all
        that close to each other, and ask for 0.75
    """
    import difflib
    names = [str(k) for k in known]
    close = difflib.get_close_matches(str(name), names, n=1, cutoff=cutoff)
    if not close:       # case aside: tpm2_pcr_extend for TPM2_PCR_Extend, Vtpmmgr for vtpmmgr
        lowered = {}
        for k in names:
            lowered.setdefault(k.lower(), k)
        close = [lowered[c] for c in difflib.get_close_matches(str(name).lower(), lowered, n=1,
                                                               cutoff=cutoff)]
    if not close:
        return ""
    return f"; did you mean {(show[close[0]] if show is not None else close[0])!r}?"


#: why a TOML or JSON document is refused when its arrays or tables nest past what
#: Python's parsers follow (they recurse once per level, and raise RecursionError a
#: thousand or so levels down): no simxen file nests more than a few levels, so such a
#: file is damaged or hostile, and is named as such rather than crashing its reader
TOO_DEEP = ("nested too deeply (arrays or tables inside each other, thousands of levels down: "
            "more than a parser can follow)")


def finite(value) -> bool:
    """Whether the number *value* is finite as a float: not NaN or an infinity, and not an
    integer beyond a float's range -- TOML caps integers at 64 bits but Python's reader
    takes any, and ``float(10 ** 400)`` raises OverflowError wherever it is converted."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


#: how an error names the type of a value read from TOML (and the type a key expects)
TOML_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
              list: "an array", dict: "a table"}


def found(value) -> str:
    """How an error names a bad ``value`` read from a TOML file, after "found" or
    "got": as the file would write it, with its type, so that ``"3"`` (a string) and
    ``3`` (an integer) are told apart -- ``'3' (a string)``, ``true (a boolean)``,
    ``2026-01-01 (a TOML date or time)``; an array or a table by what it is, as its
    contents may be long (``an array``, ``a table``)."""
    import datetime
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, (datetime.date, datetime.time)):       # TOML's dates and times
        return f"{value.isoformat()} (a TOML date or time)"
    kind = type(value)
    return f"{value!r} ({TOML_TYPES.get(kind, kind.__name__)})"

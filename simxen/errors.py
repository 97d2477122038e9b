"""Errors meant for a user, with the exit status the ``simxen`` command gives them.

Every layer may raise these; the CLI turns them into one readable line and an
exit status, never a traceback.
"""


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


def did_you_mean(name, known) -> str:
    """``"; did you mean X?"`` for the one of ``known`` closest to a misspelt ``name``,
    or ``""`` when none is close (difflib's ratio at least 0.75)."""
    import difflib
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""

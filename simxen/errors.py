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

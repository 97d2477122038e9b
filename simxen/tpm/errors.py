"""The two exceptions of the TPM library.

:class:`TpmError` never leaves :meth:`simxen.tpm.TpmEngine.execute`: the
engine turns it into a 10-byte error response.  Command code raises it with the
bare response code and, for format-1 codes, the number of the parameter,
handle or session it refers to; the engine composes the final code.

:class:`StateError` is what :meth:`TpmEngine.from_state` raises for a state
blob it cannot restore (corrupt, truncated, unknown version).
"""

from simxen.tpm.constants import rc_format1, rc_name


class TpmError(Exception):
    """A TPM response code raised while executing a command."""

    __slots__ = ("rc", "param", "handle", "session")

    def __init__(self, rc, *, param=0, handle=0, session=0):
        super().__init__(rc)
        self.rc = rc
        self.param = param
        self.handle = handle
        self.session = session

    @property
    def code(self):
        """The response code with its parameter/handle/session number."""
        return rc_format1(self.rc, param=self.param, handle=self.handle,
                          session=self.session)

    def __str__(self):
        return rc_name(self.code)


class StateError(ValueError):
    """A state blob that cannot be restored."""

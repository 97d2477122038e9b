"""The TPM 2.0 commands, one module per chapter of Part 3.

Each module registers its commands in :data:`COMMANDS` with :func:`command`:
the code, the handle area (one type spec per handle, see
:meth:`simxen.tpm.engine.TpmEngine.check_handle`), how many of those handles
need authorization and with which role (``"user"``, ``"admin"``, ``"dup"``),
and whether the first parameter may be encrypted (``decrypt``) and the
first response parameter (``encrypt``).  A handler receives the engine and
a :class:`~simxen.tpm.engine.Command` and returns ``(response handle bytes,
response parameter bytes)``; it raises
:class:`~simxen.tpm.errors.TpmError` before changing any state.
"""

import importlib

#: code -> (handler, handle specs, number of auth handles, roles, decrypt, encrypt)
COMMANDS = {}

_MODULES = ("startup", "testing", "session_commands", "object_commands", "asymmetric",
            "hash_commands", "random", "attestation", "integrity", "ea", "hierarchy",
            "dictionary_attack", "context", "clocks", "capability", "signature", "nv",
            "credential", "symmetric", "duplication",
            "command_audit", "management", "ephemeral")


def command(code, handles=(), auth=0, roles=None, decrypt=False, encrypt=False):
    """Register the decorated function as the handler of command ``code``."""
    def register(func):
        r = tuple(roles) if roles is not None else ("user",) * auth
        COMMANDS[code] = (func, tuple(handles), auth, r, decrypt, encrypt)
        return func
    return register


def load_all():
    """Import every command module (registration happens at import)."""
    for name in _MODULES:
        importlib.import_module(f"simxen.tpm.commands.{name}")

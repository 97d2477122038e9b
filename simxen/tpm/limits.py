"""Sizes of the engine's tables, reported by GetCapability and in docs/tpm.rst."""

#: Transient object slots (TPM_PT_HR_TRANSIENT_MIN); a real TPM has 3.
MAX_TRANSIENT_OBJECTS = 8
#: Sessions loaded at once (TPM_PT_HR_LOADED_MIN).
MAX_LOADED_SESSIONS = 8
#: Sessions loaded or saved (TPM_PT_ACTIVE_SESSIONS_MAX).
MAX_ACTIVE_SESSIONS = 64
#: Persistent objects (EvictControl).
MAX_PERSISTENT_OBJECTS = 16
#: Largest command or response, in bytes.
MAX_COMMAND_SIZE = 4096
#: Sessions in one authorization area.
MAX_SESSIONS_PER_COMMAND = 3
#: Latest TPMS_CLOCK_INFO.clock TPM2_ClockSet accepts (Part 3, 29.2: larger is TPM_RC_VALUE).
CLOCK_MAX = 0xFFFF000000000000
#: The dictionary-attack parameters as manufactured -- maxTries, recoveryTime (s),
#: lockoutRecovery (s) -- and as TPM2_Clear restores them (the reference
#: implementation's TPM2_Clear calls DAPreInstall_Init; its own values there are
#: 3, 1000 and 1000).
DA_DEFAULTS = (32, 600, 86400)

"""Fuzzing harnesses for simxen's untrusted-input surfaces.

Each *target* (:mod:`fuzz.targets`) takes one byte string, drives one
surface with it and checks that surface's invariants; a broken invariant is
a :class:`~fuzz.targets.Finding`, any other exception a crash:

=============  =================================================================
``engine``     a sequence of TPM commands through ``TpmEngine.execute``: never an
               exception, always a well-formed response, a refused command leaves
               the persistent state blob, the loaded handles and the PCRs as they were
``framing``    bytes on the mssim command port and the swtpm data port: never an
               exception, every TPM response well formed, a client's handles
               flushed when it ends
``tpmif``      a hostile guest's shared page as the vTPM's tpmback reads it: any
               header, state, length, locality, extra-page list and payload; the
               backend never crashes, answers within the page or not at all,
               and still serves the guest's next well-formed command
``manager``    manager messages from a hostile guest (through its vTPM) or a hostile
               vTPM (straight to the manager): every message answered with a
               framed reply, no physical-PCR change by the non-admin side, the
               other vTPM's record untouched, both sides still served
``xenstore``   XenStore operations by unprivileged domains: only XenStore errors,
               a consistent tree, a dom0-only node nobody else can touch
``eventlog``   the TCG crypto-agile event-log parser and replay
``ima``        the IMA ``ascii_runtime_measurements`` and ``binary_runtime_measurements``
               parsers (and their round trips)
``scenario``   the scenario loader on arbitrary TOML
``state``      ``simxen tpm serve --state FILE`` on any file: a one-line refusal, or
               a TPM that answers well formed and saves back to the same blob
``trace``      ``simxen trace --from FILE`` in every export format
=============  =================================================================

:mod:`fuzz.run` runs one target for a given time, coverage-guided with
atheris (libFuzzer) when it is installed, else with a seeded mutator::

    scripts/fuzz.sh engine 60          # = python -m fuzz.run engine 60
"""

"""docs/tpm.rst lists exactly the commands the engine implements."""

import re
from pathlib import Path

from simxen.tpm.commands import COMMANDS, load_all
from simxen.tpm.constants import command_name

DOC = Path(__file__).resolve().parents[2] / "docs" / "tpm.rst"


def test_command_table_matches_the_engine():
    load_all()
    text = DOC.read_text()
    listed = {int(code, 16) for code in re.findall(r"^TPM2_\w+\s+0x([0-9A-F]{3})\s", text, re.M)}
    assert listed == set(COMMANDS)
    for cc in COMMANDS:
        assert command_name(cc) in text

"""The README's picture is simxen's own output: regenerating it gives the same bytes."""

from pathlib import Path

import pytest

from simxen.cli import main

ROOT = Path(__file__).resolve().parents[2]
PICTURE = ROOT / "docs" / "img" / "one-command.svg"
ARGS = ["trace", "scenarios/vtpm-stack.toml", "--format", "sequence", "--command",
        "TPM2_PCR_Extend"]


@pytest.mark.slow
def test_regenerating_the_readme_picture_gives_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "one-command.svg"
    assert main(ARGS + ["-o", str(out)]) == 0
    assert out.read_bytes() == PICTURE.read_bytes(), (
        "the model changed the picture: regenerate it with "
        f"simxen {' '.join(ARGS)} -o docs/img/one-command.svg")


def test_the_readme_shows_it_and_says_how_it_was_made():
    readme = (ROOT / "README.rst").read_text()
    assert ".. image:: docs/img/one-command.svg" in readme
    assert ("simxen trace scenarios/vtpm-stack.toml --format sequence --command "
            "TPM2_PCR_Extend\n-o docs/img/one-command.svg") in readme

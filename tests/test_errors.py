"""The two helpers every layer's error messages share (:mod:`simxen.errors`): the
"did you mean" after a misspelt name, and how a bad value read from TOML is named.
Each message is made in one place, so they read alike whichever layer refused the
input; a test below keeps anyone from writing one out again."""

import datetime
import re
from pathlib import Path

import pytest

from simxen.errors import did_you_mean, found

PACKAGE = Path(__file__).resolve().parents[1] / "simxen"


def test_did_you_mean_names_the_closest_name_quoted_or_nothing():
    assert did_you_mean("memroy", ["memory", "kernel", "name"]) == "; did you mean 'memory'?"
    assert did_you_mean("zzz", ["memory", "kernel"]) == ""
    # what is shown may be other than what is compared: a metric by the part after its
    # workload's name, shown whole
    tails = {"requests_completed": "pingpong.requests_completed"}
    assert (did_you_mean("requests_complete", tails, show=tails)
            == "; did you mean 'pingpong.requests_completed'?")
    # names that share a long start are all close at difflib's 0.6; 0.75 keeps them apart
    names = ["TPM2_PCR_Extend", "TPM2_PCR_Read", "TPM2_Quote"]
    assert did_you_mean("TPM2_Clear", names) != ""
    assert did_you_mean("TPM2_Clear", names, cutoff=0.75) == ""
    assert did_you_mean("TPM2_PCR_Extnd", names, cutoff=0.75) == "; did you mean 'TPM2_PCR_Extend'?"


@pytest.mark.parametrize("value,shown", [
    ("3", "'3' (a string)"),
    (3, "3 (an integer)"),
    (2.5, "2.5 (a number)"),
    (True, "true (a boolean)"),
    ([1, 2], "an array"),
    ({"x": 1}, "a table"),
    (datetime.date(2026, 1, 1), "2026-01-01 (a TOML date or time)"),
    (datetime.time(7, 30), "07:30:00 (a TOML date or time)"),
])
def test_a_value_found_in_toml_is_named_as_the_file_writes_it_with_its_type(value, shown):
    assert found(value) == shown


def test_no_module_writes_a_did_you_mean_of_its_own():
    """Six modules once did, with three cutoffs and two spellings."""
    own = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
           if p.name != "errors.py" and re.search(r"did you mean|get_close_matches",
                                                  p.read_text(encoding="utf-8"))]
    assert own == []


def test_did_you_mean_looks_past_case_when_nothing_is_close_with_it():
    names = ["TPM2_PCR_Extend", "TPM2_PCR_Read", "TPM2_Quote"]
    # as typed, every letter differs in case: nothing is close at 0.75
    assert did_you_mean("tpm2_pcr_extend", names, cutoff=0.75) == \
        "; did you mean 'TPM2_PCR_Extend'?"
    assert did_you_mean("VTPMMGR", ["vtpmmgr", "guest1"]) == "; did you mean 'vtpmmgr'?"
    # a name close as typed is still found as typed, and nothing close is still nothing
    assert did_you_mean("memroy", ["memory", "MEMORY"]) == "; did you mean 'memory'?"
    assert did_you_mean("ZZZ", ["memory", "kernel"]) == ""

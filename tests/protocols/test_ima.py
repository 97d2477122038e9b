"""IMA ima-ng: template data, real-world lines, list parsing, per-bank replay."""

import hashlib

import pytest
from hypothesis import given, strategies as st

from simxen.errors import InputError
from simxen.protocols import ima

# Lines published by others (a kernel developer's mail on linux-integrity, a
# vendor's documentation); the template hash in them was computed by real kernels.
REAL_LINES = [
    "11 50b5a68bea0776a84eef6725f17ce474756e51c0 ima-ng "
    "sha256:15e1efee080fe54f5d7404af7e913de01671e745ce55215d89f3d6521d3884f0 /root/cat",
    "10 bb24b135e1c911c97aad8f1c1863efc08cd44c11 ima-ng "
    "sha256:d41dd4adacf5a35df426461dd8a92d7bdd5ba29bb61a1c3531bec0ada386f8dd "
    "/usr/lib/x86_64-linux-gnu/libresolv.so.2",
]


def test_real_kernel_lines_verify():
    entries = ima.parse_list("\n".join(REAL_LINES))
    assert [e.pcr for e in entries] == [11, 10]
    for entry, line in zip(entries, REAL_LINES):
        assert ima.measure(entry.path, entry.file_digest, pcr=entry.pcr).line() == line


def test_template_data_layout():
    digest = bytes(range(32))
    data = ima.template_data("sha256", digest, "/bin/sh")
    assert data == (b"\x28\0\0\0" + b"sha256:\0" + digest + b"\x08\0\0\0" + b"/bin/sh\0")


def test_sha1_bank_gets_template_hash_sha256_bank_its_own_hash():
    entry = ima.measure("/bin/sh", hashlib.sha256(b"sh").digest())
    assert ima.bank_digest(entry, "sha1") == entry.template_hash
    assert ima.bank_digest(entry, "sha256") == hashlib.sha256(entry.template_data).digest()
    assert ima.bank_digest(entry, "sha256", legacy_padded_sha1=True) == entry.template_hash + bytes(12)
    pcrs = ima.replay([entry])
    assert pcrs["sha256"][10] == hashlib.sha256(bytes(32) + hashlib.sha256(entry.template_data).digest()).digest()
    assert pcrs["sha1"][10] == hashlib.sha1(bytes(20) + entry.template_hash).digest()


def test_violation_extends_ff():
    entry = ima.violation("/tmp/busy")
    assert entry.line().split()[1] == "0" * 40
    assert ima.bank_digest(entry, "sha256") == b"\xff" * 32
    assert ima.parse_list(entry.line())[0].is_violation


def test_legacy_violation_is_padded_sha1_ff():
    """Kernels before 5.8 set a SHA-1-sized digest to 0xFF for a violation and
    zero-padded it into every bank; evmctl 1.4's padded replay does the same
    (an all-0xFF padded digest made ``evmctl ima_measurement`` reject the PCRs)."""
    entry = ima.violation("/tmp/busy")
    assert ima.bank_digest(entry, "sha256", legacy_padded_sha1=True) == b"\xff" * 20 + bytes(12)
    assert ima.bank_digest(entry, "sha1", legacy_padded_sha1=True) == b"\xff" * 20
    pcrs = ima.replay([entry], legacy_padded_sha1=True)
    assert pcrs["sha256"][10] == hashlib.sha256(bytes(32) + b"\xff" * 20 + bytes(12)).digest()


@pytest.mark.parametrize("path", ["/tmp/a\rb", "/x\x0by", "/x\x1cy", "/x\x85y", "/x\u2028y"])
def test_a_path_with_another_line_break_stays_one_entry(path):
    """Linux ends an ascii entry with \\n alone; evmctl takes such a path from the
    binary list, so the ascii parser must read it back too (it split the line at
    the carriage return or Unicode line break and failed the template hash)."""
    entries = [ima.measure(path, bytes(32)), ima.measure("/bin/sh", bytes(32))]
    assert ima.parse_list(ima.format_list(entries)) == entries


def test_boot_aggregate_banks():
    sha1 = {i: bytes([i]) * 20 for i in range(10)}
    sha256 = {i: bytes([i]) * 32 for i in range(10)}
    algo, digest = ima.boot_aggregate({"sha1": sha1, "sha256": sha256})
    assert algo == "sha256"
    assert digest == hashlib.sha256(b"".join(sha256[i] for i in range(10))).digest()
    algo, digest = ima.boot_aggregate({"sha1": sha1})
    assert algo == "sha1"
    assert digest == hashlib.sha1(b"".join(sha1[i] for i in range(8))).digest()
    entry = ima.boot_aggregate_entry({"sha256": sha256})
    assert entry.path == "boot_aggregate" and entry.line().startswith("10 ")
    assert " ima-ng sha256:" in entry.line()


@pytest.mark.parametrize("line,fragment", [
    ("10 abc ima-ng sha256:00 /x", "template hash"),
    ("10 " + "0" * 40 + " ima sha256:" + "0" * 64 + " /x", "template"),
    ("x " + "0" * 40 + " ima-ng sha256:" + "0" * 64 + " /x", "PCR"),
    ("10 " + "0" * 40 + " ima-ng md5:" + "0" * 32 + " /x", "algo"),
    ("10 " + "0" * 40 + " ima-ng sha256:" + "0" * 62 + " /x", "hex digits"),
    ("10 " + "1" * 40 + " ima-ng sha256:" + "0" * 64 + " /x", "does not match"),
    ("10 " + "0" * 40 + " ima-ng", "5 space-separated"),
])
def test_bad_lines_name_source_and_line(line, fragment):
    text = REAL_LINES[1] + "\n" + line + "\n"
    with pytest.raises(ima.ImaListError) as exc:
        ima.parse_list(text, source="guest3/ima")
    assert isinstance(exc.value, InputError)
    assert exc.value.line == 2
    assert str(exc.value).startswith("guest3/ima: line 2: ")
    assert fragment in str(exc.value)


paths = st.text(st.characters(blacklist_characters="\0\n", blacklist_categories=("Cs",)),
                min_size=1, max_size=60).filter(lambda p: p.strip() == p)
entries_st = st.lists(st.tuples(paths, st.sampled_from(sorted(ima.DIGEST_SIZES)), st.binary(min_size=64, max_size=64),
                                st.booleans()), max_size=8)


def build(records):
    out = []
    for path, algo, raw, is_violation in records:
        out.append(ima.violation(path, algo) if is_violation
                   else ima.measure(path, raw[:ima.DIGEST_SIZES[algo]], algo))
    return out


@given(entries_st)
def test_list_round_trip(records):
    entries = build(records)
    assert ima.parse_list(ima.format_list(entries)) == entries


@given(entries_st)
def test_replay_is_an_extend_chain(records):
    entries = build(records)
    pcrs = ima.replay(entries, banks=("sha1", "sha256", "sha384"))
    for bank, size in (("sha1", 20), ("sha256", 32), ("sha384", 48)):
        value = bytes(size)
        for entry in entries:
            value = hashlib.new(bank, value + ima.bank_digest(entry, bank)).digest()
        assert pcrs[bank].get(10, bytes(size)) == value


@pytest.mark.parametrize("parse, inputs", [(ima.parse_list, st.text(max_size=200)),
                                           (ima.parse_binary, st.binary(max_size=200))])
@given(data=st.data())
def test_garbage_raises_only_imalisterror(parse, inputs, data):
    try:
        parse(data.draw(inputs))
    except ima.ImaListError:
        pass


# ------------------------------------------------------------ binary list
def test_binary_entry_layout():
    """ima_measurements_show: u32 PCR, SHA-1 template hash, u32 name length,
    the name, u32 data length, the template data; little-endian."""
    entry = ima.parse_list(REAL_LINES[1])[0]
    data = entry.template_data
    assert entry.binary() == (b"\x0a\0\0\0" + entry.template_hash + b"\x06\0\0\0" + b"ima-ng"
                              + len(data).to_bytes(4, "little") + data)
    assert len(data) == 4 + 40 + 4 + len("/usr/lib/x86_64-linux-gnu/libresolv.so.2") + 1


def test_violation_binary_has_zero_hash_and_full_size_zero_digest():
    entry = ima.violation("/tmp/busy", "sha256")
    raw = entry.binary()
    assert raw[4:24] == bytes(20)
    assert raw[34:38] == (4 + 40 + 4 + 10).to_bytes(4, "little")
    assert raw[38:] == b"\x28\0\0\0sha256:\0" + bytes(32) + b"\x0a\0\0\0/tmp/busy\0"
    assert ima.parse_binary(raw) == [entry]


@given(entries_st)
def test_binary_round_trip(records):
    entries = build(records)
    raw = ima.format_binary(entries)
    assert ima.parse_binary(raw) == entries
    assert ima.format_binary(ima.parse_binary(raw)) == raw
    assert raw == b"".join(e.binary() for e in entries)


@given(entries_st)
def test_binary_and_ascii_lists_hold_the_same_entries(records):
    entries = build(records)
    assert ima.parse_binary(ima.format_binary(entries)) == ima.parse_list(ima.format_list(entries))


@given(entries_st.filter(bool), st.data())
def test_a_cut_binary_list_names_the_entry(records, data):
    entries = build(records)
    raw = ima.format_binary(entries)
    cut = data.draw(st.integers(1, len(raw) - 1))
    bounds = [0]
    for entry in entries:
        bounds.append(bounds[-1] + len(entry.binary()))
    if cut in bounds:
        assert ima.parse_binary(raw[:cut]) == entries[:bounds.index(cut)]
        return
    with pytest.raises(ima.ImaListError) as exc:
        ima.parse_binary(raw[:cut], source="guest1/binary")
    number = max(i for i, b in enumerate(bounds) if b < cut) + 1
    assert str(exc.value).startswith(f"guest1/binary: entry {number} at byte {bounds[number - 1]}: ")


def _entry_bytes(pcr=10, thash=None, name=b"ima-ng", data=None):
    data = ima.template_data("sha256", bytes(32), "/x") if data is None else data
    if thash is None:
        thash = hashlib.sha1(data).digest()
    return ima.BINARY_HEAD.pack(pcr, thash, len(name)) + name + ima.U32.pack(len(data)) + data


@pytest.mark.parametrize("raw,fragment", [
    (_entry_bytes(pcr=24), "PCR 24"),
    (_entry_bytes(name=b"ima"), "template"),
    (_entry_bytes(name=b"ima-sig"), "template"),
    (_entry_bytes(thash=b"\1" * 20), "does not match"),
    (_entry_bytes(data=ima.template_data("sha256", bytes(32), "/x") + b"\0"), "after the n-ng"),
    (_entry_bytes(data=b"\x05\0\0\0md5:\0" + b"\x03\0\0\0/x\0"), "d-ng"),
    (_entry_bytes(data=b"\x0c\0\0\0sha256:\0" + bytes(4) + b"\x03\0\0\0/x\0"), "4 bytes"),
    (_entry_bytes(data=ima.U32.pack(40) + b"sha256:\0" + bytes(32) + b"\x02\0\0\0/x"), "NUL"),
    (_entry_bytes(data=ima.U32.pack(99) + b"sha256:\0"), "99 bytes"),
    (_entry_bytes()[:-1], "remain"),
])
def test_bad_binary_entries(raw, fragment):
    good = ima.measure("/bin/sh", bytes(32)).binary()
    with pytest.raises(ima.ImaListError) as exc:
        ima.parse_binary(good + raw)
    assert isinstance(exc.value, InputError)
    assert f"entry 2 at byte {len(good)}: " in str(exc.value)
    assert fragment in str(exc.value)


def test_pcr_file_is_the_tpm12_sysfs_form():
    text = ima.pcrs_text({0: bytes(20), 1: bytes(range(20))})
    assert text == ("PCR-00: " + "00 " * 20 + "\n"
                    "PCR-01: " + "".join(f"{b:02X} " for b in range(20)) + "\n")
    with pytest.raises(ima.ImaListError, match="PCR 1 is missing"):
        ima.pcrs_text({0: bytes(20), 2: bytes(20)})

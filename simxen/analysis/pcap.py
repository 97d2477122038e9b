"""The TPM command/response stream one TPM saw, as a packet capture.

Wireshark and tshark decode TPM 2.0 traffic in the Microsoft simulator's TCP
framing (:mod:`simxen.protocols.mssim`). This module replays the ``tpm.exec``
records of one TPM -- a guest's vTPM, or the physical TPM behind the
manager -- as that traffic: one TCP connection on loopback from a client port
to port 2321, each command sent as the 9-byte ``TPM_SEND_COMMAND`` header and
the command (when the TPM started executing it, ``t - duration``), each
response as its size, body and trailing zero (when it finished, ``t``).
Timestamps are simulated time since the run started, to the nanosecond (a
capture that starts on 1 January 1970). The bytes are the real command and
response bytes the TPM executed, so the dissector shows every field::

    simxen trace scenarios/boot-attest.toml --format pcap --tpm guest1 -o guest1.pcap
    tshark -r guest1.pcap -V

Frames are Ethernet II / IPv4 / TCP with correct checksums (pcap, nanosecond
timestamps, LINKTYPE_ETHERNET).
"""

from __future__ import annotations

import struct

from simxen.errors import InputError
from simxen.protocols import mssim

__all__ = ["PHYSICAL", "streams", "select", "write", "to_bytes"]

#: the name that selects the physical TPM (``--tpm physical``)
PHYSICAL = "physical"

_CLIENT_PORT = 49152             # first IANA dynamic port: above the server's, as the dissector needs
_LOOPBACK = bytes((127, 0, 0, 1))
_FIN, _SYN, _PSH, _ACK = 0x01, 0x02, 0x08, 0x10

#: the first time a pcap record header cannot hold: its seconds field is a 32-bit
#: unsigned integer (pcap-savefile(5); draft-ietf-opsawg-pcap, "Packet Record")
PCAP_END_SECONDS = 2 ** 32


def _name(r):
    """The name of the TPM a ``tpm.exec`` record with command bytes ran on, or ``None``."""
    if r["kind"] != "tpm.exec" or not r.get("command"):
        return None
    return PHYSICAL if r["dom"] is None else r.get("dom_name", f"dom{r['dom']}")


def streams(records) -> dict:
    """``{name: [tpm.exec records]}``: ``"physical"`` and each vTPM domain's name."""
    out = {}
    for r in records:
        name = _name(r)
        if name is not None:
            out.setdefault(name, []).append(r)
    return out


def select(records, tpm=None):
    """``(name, tpm.exec records)`` of the TPM called ``tpm``: ``"physical"``,
    a vTPM's domain name, or a guest's name (the vTPM that served it). ``None``
    picks the first vTPM. :class:`InputError` says what the trace offers.

    ``records`` may be a stream (:mod:`~simxen.analysis.trace_format`): it is
    read a record at a time, two or three times -- which TPMs executed
    commands and what each domain is called; for a guest, the vTPM that took
    its commands; then that one TPM's ``tpm.exec`` records, the only records
    kept (the capture is made of them)."""
    found = {}                  # TPM name -> None, in the order they first executed
    names = {}                  # domid -> dom_name (the last record's)
    for r in records:
        name = _name(r)
        if name is not None:
            found.setdefault(name)
        if r.get("dom") is not None:
            names[r["dom"]] = r.get("dom_name")
    if not found:
        raise InputError("the trace has no tpm.exec record with command bytes (was it "
                         "recorded at a trace level that keeps TPM commands?)", key="--tpm")
    if tpm is None:
        vtpms = [n for n in found if n != PHYSICAL]
        tpm = vtpms[0] if vtpms else PHYSICAL
    chosen = tpm if tpm in found else _served_by(records, names, found, tpm)
    if chosen is None:
        raise InputError(f"no TPM called {tpm!r} in the trace; it has: "
                         f"{', '.join(sorted(found))} (or a guest they serve)", key="--tpm")
    return chosen, [r for r in records if _name(r) == chosen]


def _served_by(records, names, found, guest_name):
    """The TPM (in ``found``) of the domain whose tpmback took the guest's commands first."""
    guest = next((d for d, n in names.items() if n == guest_name), None)
    if guest is not None:
        for r in records:
            if r["kind"] == "tpm.back.take" and r.get("domid") == guest:
                served_by = names.get(r["dom"])
                if served_by in found:
                    return served_by
    return None


def _checksum(data) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _Connection:
    """One TCP connection's two sequence numbers, and the frames it sent."""

    def __init__(self, client_port, server_port):
        self.ports = {True: (client_port, server_port), False: (server_port, client_port)}
        self.seq = {True: 1000, False: 5000}
        self.ip_id = 0
        self.frames = []

    def send(self, t, from_client, payload=b"", flags=_PSH | _ACK):
        sport, dport = self.ports[from_client]
        seq, ack = self.seq[from_client], self.seq[not from_client]
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack if flags & _ACK else 0, 5 << 4,
                          flags, 65535, 0, 0)
        pseudo = _LOOPBACK + _LOOPBACK + struct.pack(">BBH", 0, 6, len(tcp) + len(payload))
        csum = _checksum(pseudo + tcp + payload)
        tcp = tcp[:16] + struct.pack(">H", csum) + tcp[18:]
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), self.ip_id,
                         0x4000, 64, 6, 0, _LOOPBACK, _LOOPBACK)
        ip = ip[:10] + struct.pack(">H", _checksum(ip)) + ip[12:]
        ether = bytes(12) + b"\x08\x00"
        self.frames.append((t, ether + ip + tcp + payload))
        self.seq[from_client] = (seq + len(payload) + (1 if flags & (_SYN | _FIN) else 0)) & 0xFFFFFFFF


def _ns(t) -> int:
    return max(0, round(t * 1e9))


def to_bytes(execs) -> bytes:
    """A pcap of the ``tpm.exec`` records ``execs`` (one TPM's, in time order)."""
    conn = _Connection(_CLIENT_PORT, mssim.COMMAND_PORT)
    last = 0
    spans = []
    for r in sorted(execs, key=lambda r: (r["t"], r["seq"])):
        t = r["t"]
        end = _ns(t) if t < PCAP_END_SECONDS else None
        if end is None or end >= PCAP_END_SECONDS * 10**9:
            raise InputError(f"record seq {r['seq']}: time {t!r} s is past the last second a "
                             f"pcap record can hold ({PCAP_END_SECONDS - 1}: a 32-bit field)")
        # an execution that would have begun before the run did starts with it
        start = max(last, end - _ns(min(r.get("duration") or 0.0, t)))
        spans.append((start, end, bytes.fromhex(r["command"]), bytes.fromhex(r.get("response", "")),
                      r.get("locality") or 0))
        last = end
    if spans:
        t0 = spans[0][0]
        conn.send(t0, True, flags=_SYN)
        conn.send(t0, False, flags=_SYN | _ACK)
        conn.send(t0, True, flags=_ACK)
    for start, end, command, response, locality in spans:
        conn.send(start, True, mssim.send_command_header(locality, len(command)))
        conn.send(start, True, command)
        if response:
            for part in mssim.response_parts(response):
                conn.send(end, False, part)
    if spans:
        conn.send(last, True, flags=_FIN | _ACK)
        conn.send(last, False, flags=_FIN | _ACK)
        conn.send(last, True, flags=_ACK)
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]   # ns pcap, Ethernet
    for t, frame in conn.frames:
        out.append(struct.pack("<IIII", t // 10**9, t % 10**9, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def write(records, path, tpm=None) -> tuple:
    """Write the capture of ``tpm`` (see :func:`select`) to ``path``;
    returns ``(tpm name, commands written)``."""
    name, execs = select(records, tpm)
    with open(path, "wb") as fp:
        fp.write(to_bytes(execs))
    return name, len(execs)

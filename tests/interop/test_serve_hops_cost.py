"""``simxen serve --hops`` after every command: the same line as a read of the whole
trace gives, for a cost that does not grow with how many commands were served.

In-process (no tool needed): the session ``simxen serve`` builds, its command
logger, and a few hundred commands through the path, with a small trace buffer
so the trace spills (and, with ``--trace``, streams) many times meanwhile."""

import hashlib
import io

import pytest

from simxen.analysis import hops
from simxen.scenario import runner
from simxen.server import cmd_serve
from simxen.tpm import client
from simxen.tpm.constants import TPM_ALG
from simxen.xen import trace as trace_module

from test_serve_backend import SCENARIO

BUFFER = 400        # trace rows in memory: a spill every ~10 commands


def session(monkeypatch, trace_file=None):
    monkeypatch.setattr(cmd_serve, "prepare",
                        lambda scenario, seed=None: runner.prepare(scenario, seed=seed,
                                                                   trace_buffer=BUFFER))
    return cmd_serve.ServeSession.build(SCENARIO, "guest1", trace_file=trace_file)


def command(i):
    if i % 3 == 0:
        return client.get_random_command(8)
    if i % 3 == 1:
        return client.pcr_extend_command(16, {TPM_ALG.SHA256: hashlib.sha256(b"%d" % i).digest()})
    return client.pcr_read_command({TPM_ALG.SHA256: [16]})


@pytest.mark.parametrize("streamed", [False, True], ids=["spilled", "streamed"])
def test_each_line_is_the_whole_reads_and_costs_what_its_command_emitted(monkeypatch,
                                                                         streamed):
    sink = io.StringIO()
    s = session(monkeypatch, trace_file=sink if streamed else None)
    read, unpickled, unpickled_by_read = [], [0], []
    command_hops, load_block = hops.command_hops, trace_module._load_block

    def counting_hops(records, flows=None):
        before = unpickled[0]
        records = list(records)
        unpickled_by_read.append(unpickled[0] - before)
        read.append(len(records))
        return command_hops(records, flows)

    def counting_load(file, wanted=None):
        rows = load_block(file, wanted)
        unpickled[0] += len(rows)
        return rows
    monkeypatch.setattr(hops, "command_hops", counting_hops)
    monkeypatch.setattr(trace_module, "_load_block", counting_load)
    out = io.StringIO()
    s.path.on_exchange = cmd_serve._command_logger(s, out, True)
    for i in range(240):
        s.path.execute(command(i))
    monkeypatch.undo()
    trace = s.hv.trace
    assert trace.spilled_runs() > 20

    # the records each line read: its own command's, the same for the 200th as the 2nd
    # (a read of the whole trace grows by ~40 records a command: 9,000 by the last)
    assert len(read) == 240
    assert max(read[-30:]) <= max(read[:30]) < 100
    # the spilled rows it unpickled: at most those of the run spilled while its command ran
    assert max(unpickled_by_read) <= BUFFER and unpickled_by_read.count(0) > 200

    # every line is what a read of the whole trace gives for that command
    lines = out.getvalue().splitlines()
    whole = {c.flow: c for c in hops.command_hops(trace.records())}
    assert len(lines) == 240
    for line in lines:
        flow, text = line[1:].split("] ", 1)
        assert text == hops.format_line(whole[flow])
    if streamed:
        s.write_trace(None, sink)

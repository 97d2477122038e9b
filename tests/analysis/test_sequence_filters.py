"""What ``simxen trace --format sequence --command NAME`` keeps: one command's journey."""

from simxen.analysis import sequence


def _orphan_notifications(msgs):
    """Notifications in ``msgs`` with no write from their sender to their receiver
    since the previous notification on that pair: arrows that announce nothing drawn."""
    written, orphans = set(), []
    for m in msgs:
        if m.kind == "write":
            written.add((m.src, m.dst))
        elif m.kind == "notify":
            if (m.src, m.dst) not in written:
                orphans.append(m)
            written.discard((m.src, m.dst))
    return orphans


def test_a_commands_journey_holds_only_its_own_notifications(shipped_traces):
    """guest1's first TPM2_PCR_Extend waits 3.25 s for its vTPM to start: the vTPM's
    own GetRandom, LOADHASHKEY and SAVEHASHKEY to the manager lie in the window. Their
    six notifications were drawn in the PCR_Extend's diagram without the writes they
    announce; a notification now belongs to the command whose bytes its sender last
    put in the shared page, and is drawn only in that command's journey."""
    records = shipped_traces["boot-attest"]
    for nth in (1, 2):
        msgs = sequence.messages(records, command="TPM2_PCR_Extend", nth=nth)
        notes = [m for m in msgs if m.kind == "notify"]
        assert [(m.src, m.dst) for m in notes] == [
            ("guest1", "vtpm-guest1"), ("vtpm-guest1", "vtpmmgr"),
            ("vtpmmgr", "vtpm-guest1"), ("vtpm-guest1", "guest1")], notes
        assert _orphan_notifications(msgs) == []
    # the whole run, unfiltered, still draws every notification
    every = sequence.messages(records)
    sends = [r for r in records if r["kind"] == "evtchn.send" and "remote_dom" in r]
    assert sum(m.kind == "notify" for m in every) == len(sends)

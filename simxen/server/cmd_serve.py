"""``simxen serve``: a guest's vTPM on loopback, through the whole simulated path.

Runs a scenario's host -- the vTPM manager, the vTPM stub domains, the
guests -- in simulated time until the named guest's vTPM is connected, then
lets real TPM tools in::

    simxen serve scenarios/vtpm-stack.toml --domain guest1 --hops &
    export TPM2TOOLS_TCTI=mssim:host=127.0.0.1,port=2321
    tpm2_pcrextend 16:sha256=$(echo -n hi | sha256sum | cut -d' ' -f1)

Each command a tool sends enters at the guest's xen-tpmfront and crosses
every simulated hop: the granted page and event channel to the guest's vTPM
stub domain, its TPM engine and -- for a command that changed persistent
state -- its state save, a second ring round trip to the vTPM manager, which
alone drives the physical TPM behind the TIS window. Simulated time advances
only while a command is in flight. ``--hops`` prints one line per command
to standard error: name, response code, total simulated latency and its
split into front->back, vtpm, manager, ptpm and back->front (see
``docs/serve.rst``); at exit, the percentiles of each hop.

Every check that needs no boot is made first (``plan()``): the ports and
``--host`` (an IPv4 or IPv6 address or a name: ``--host ::1`` is reached as
``mssim:host=::1,port=2321``), the output files, the scenario with its
``--set`` overrides, and ``--domain`` against the guests of the host the boot
would create -- a mistake is one line and exit status 2 within about the time
``simxen validate`` takes, before anything is booted or written.

``--protocol mssim`` (default) uses ports P and P+1 and, like tpm2-abrmd,
flushes what each tool run left loaded when it disconnects; ``--protocol
swtpm`` speaks swtpm's socket protocol. Power signals are acknowledged and
do nothing: the guest's vTPM is already started, as a booted guest's is.
``--trace FILE`` writes the run's trace (JSON Lines) as it goes -- from
the boot on, each time the trace's buffer fills (``docs/trace.rst``) -- and
the rest on exit. Ctrl-C or SIGTERM stops it, even while the host is still
booting: the trace so far is written, and the exit status is 130 or 143 (0
after swtpm's CMD_SHUTDOWN).

An attestation scenario's guest boots through pv-grub first, so its vTPM's
PCRs 4 and 5 hold the kernel, command line and initrd, as the verifier of
``simxen run`` sees them; ``--eventlog-out FILE`` writes pv-grub's event log
for ``tpm2_eventlog FILE``::

    simxen serve scenarios/boot-attest.toml --domain guest1 --eventlog-out boot.log &
    tpm2_pcrread sha256:4,5
    tpm2_eventlog boot.log
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from dataclasses import dataclass

from simxen.analysis import hops
from simxen.domains.stack import build_host
from simxen.errors import InputError, SimxenError
from simxen.scenario import scenario_file, serve_host
from simxen.scenario.output import check_file, file_name, open_output
from simxen.scenario.runner import Stop, prepare, run_until
from simxen.server import foreground
from simxen.server.resource_manager import ResourceManager, describe
from simxen.server.sim_backend import SimulatedPath
from simxen.xen.errors import XenError

__all__ = ["add_arguments", "main", "plan", "run", "Plan", "ServeSession"]


def add_arguments(parser):
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (TOML) whose host to run")
    parser.add_argument("--domain", required=True, metavar="NAME",
                        help="the guest whose vTPM to expose")
    foreground.add_listen_arguments(parser)
    parser.add_argument("--hops", action="store_true",
                        help="print each command's per-hop simulated latency")
    parser.add_argument("--seed", type=int, help="seed of every random stream "
                        "(default: the scenario's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of the scenario (repeatable), as simxen run "
                        "(e.g. --set stack.guest_count=4 to serve guest4)")
    parser.add_argument("--trace", metavar="FILE", type=file_name,
                        help="write the trace (JSON Lines) to FILE as the run goes; complete on "
                        "exit")
    parser.add_argument("--eventlog-out", metavar="FILE", type=file_name,
                        help="write the guest's TCG event log (binary_bios_measurements, as "
                        "pv-grub wrote it) to FILE once it has booted, for tpm2_eventlog; - is "
                        "standard output")
    parser.add_argument("--quiet", action="store_true", help="do not log each command")


@dataclass
class ServeSession:
    """A booted host and the guest path the servers use.

    :meth:`build` loads and checks the scenario and the guest's name
    (:func:`plan`, before anything boots), builds its host with the domains
    layer's :func:`~simxen.domains.stack.build_host` (the same host the
    scenario's vtpm-stack workload builds) and runs it until ``guest``'s
    vTPM is connected (:meth:`boot`). ``path`` is then a
    :class:`~simxen.server.sim_backend.SimulatedPath` into that guest.
    """

    scenario: object      #: the loaded :class:`~simxen.scenario.scenario_file.Scenario`
    hv: object            #: the :class:`~simxen.xen.Hypervisor`
    host: object          #: the :class:`~simxen.domains.stack.Host`
    guest: object         #: the guest's :class:`~simxen.domains.guest.Guest` kernel
    path: SimulatedPath
    #: ``seq`` of the trace's first record after the boot: the served commands' records
    #: start there (pv-grub's own extends, in the guest's domain, come before it)
    served_from: int = 0

    @classmethod
    def build(cls, scenario_path, guest_name, *, seed=None, trace_file=None, stop=None,
              overrides=()):
        """:func:`plan`, then :meth:`boot`. ``trace_file`` (open for writing): the trace
        is written to it as the run goes (:meth:`~simxen.xen.trace.Trace.stream_to`);
        :meth:`write_trace` finishes it. ``stop`` (a :class:`~simxen.scenario.runner.Stop`):
        once its ``reason`` is set (by a signal) the boot ends after the event being
        processed and :class:`BootStopped` says when, the trace so far written.
        ``overrides``: ``--set KEY=VALUE`` texts, applied and checked as ``simxen run``
        does."""
        planned = plan(scenario_path, guest_name, seed=seed, overrides=overrides)
        return cls.boot(planned, trace_file=trace_file, stop=stop)

    @classmethod
    def boot(cls, planned, *, trace_file=None, stop=None):
        """Boot the host of a :class:`Plan` until its guest's vTPM is connected
        (``trace_file`` and ``stop`` as for :meth:`build`)."""
        sim, spec, guest_name = planned.sim, planned.spec, planned.guest
        scenario, hv = sim.scenario, sim.hv
        if trace_file is not None:
            hv.trace.stream_to(trace_file, hv.low_water)
        host = build_host(hv, spec)
        until = scenario.data["scenario"]["until"]
        env = hv.env
        try:
            run_until(env, env.any_of([host.ready, env.timeout(until)]), stop)
        except XenError as exc:
            raise InputError(f"the host did not boot: {exc}", path=scenario.path) from None
        if stop is not None and stop.reason is not None:
            if trace_file is not None:
                hv.trace.finish_stream()
                trace_file.flush()
            raise BootStopped(stop.reason, env.now)
        try:                          # plan() checked the name: only a failed boot is left
            guest = host.guest(guest_name)
        except KeyError:              # still pv-grub: it stopped the boot, or is not done
            why = getattr(host.toolstack.kernels.get(guest_name), "aborted", None)
            if why:
                raise InputError(f"{guest_name} did not boot: pv-grub stopped it: {why}",
                                 path=scenario.path) from None
            guest = None
        if guest is None or not guest.ready.triggered or guest.tpm is None:
            raise InputError(f"{guest_name}'s vTPM did not connect within {until:g} simulated "
                             "seconds (scenario.until)", path=scenario.path, key="scenario.until")
        return cls(scenario, hv, host, guest, SimulatedPath.for_guest(guest),
                   served_from=len(hv.trace))

    def event_log(self) -> bytes:
        """The guest's TCG event log as pv-grub wrote it (``b""`` when nothing measured its boot)."""
        boot = getattr(self.guest, "boot_measurement", None)
        return boot.log_bytes if boot is not None and boot.measured else b""

    def write_event_log(self, path):
        log = self.event_log()
        if not log:
            raise InputError(f"{self.guest.name} has no event log: its boot was not measured "
                             "(no pv-grub in this scenario)", key="--eventlog-out")
        try:
            if str(path) == "-":                # standard output, as for every output file
                sys.stdout.buffer.write(log)
                sys.stdout.flush()
                return
            with open(path, "wb") as f:
                f.write(log)
        except OSError as exc:
            raise InputError(f"cannot write the event log: {exc.strerror}", path=path,
                             key="--eventlog-out") from None

    def write_trace(self, path, file=None):
        """Write the trace to ``path``, or the rest of it to the ``file`` it is
        streamed to (``build(trace_file=...)``), which is then closed."""
        try:
            if file is not None:
                self.hv.trace.finish_stream()
                file.flush()
                if file is not sys.stdout:
                    file.close()
                return
            with open(path, "w", encoding="utf-8") as f:
                self.hv.trace.to_jsonl(f)
        except OSError as exc:
            raise InputError(f"cannot write trace: {exc.strerror}", path=path,
                             key="--trace") from None


class BootStopped(Exception):
    """A signal stopped ``simxen serve`` while the host was still booting."""

    def __init__(self, reason, now):
        super().__init__(f"stopped by {reason} while the host was booting, at {now:.6f} s of "
                         "simulated time")
        self.reason = reason


@dataclass
class Plan:
    """What :func:`plan` checked: the prepared run, the host to boot, the guest to serve."""

    sim: object       #: the :class:`~simxen.scenario.runner.Simulation`, not yet started
    spec: object      #: the :class:`~simxen.domains.stack.HostSpec` to boot
    guest: str        #: the guest whose vTPM to serve


def plan(scenario_path, guest_name, *, seed=None, overrides=(), event_log=False) -> Plan:
    """Every check of the scenario and the request before anything boots: the file with
    its ``--set`` overrides (:func:`~simxen.scenario.scenario_file.load`), what
    ``simxen validate`` checks (:func:`~simxen.scenario.runner.prepare`), then
    :func:`simxen.scenario.serve_host.plan`: a vTPM host, ``guest_name`` one of its
    guests with a vTPM (``--domain``), and with ``event_log`` a pv-grub boot
    (``--eventlog-out``). An :class:`~simxen.errors.InputError` in about the time
    ``validate`` takes, not after a boot."""
    scenario = scenario_file.load(scenario_path, overrides)
    sim = prepare(scenario, seed=seed)        # every check `simxen validate` makes
    spec = serve_host.plan(sim, guest_name, event_log=event_log)
    return Plan(sim, spec, guest_name)


def _command_logger(session, stream, hops_wanted):
    """``on_exchange`` for the session's path: one line per command (under its lock).

    With ``hops_wanted`` the line is the command's hop breakdown, read from the
    records emitted since the previous command ended (between two commands the
    simulation stands still, so they are this command's): the trace's
    ``iter_records(since=...)`` of the kinds :mod:`~simxen.analysis.hops` reads.
    Each line costs what its own command emitted, however long the server has
    been up -- reading the whole trace each time made a long session slower with
    every command."""
    trace = session.hv.trace
    mark = [len(trace)]             # seq of the first record after the last command

    def on_exchange(ex):
        since = mark[0]
        mark[0] = len(trace)
        if ex.error is not None:
            print(f"[{ex.flow}] path error: {ex.error}", file=stream, flush=True)
            return
        if hops_wanted:
            found = hops.command_hops(trace.iter_records(kinds=hops.READS, since=since),
                                      flows=[ex.flow])
            if found:
                print(f"[{ex.flow}] {hops.format_line(found[0])}", file=stream, flush=True)
                return
        print(f"[{ex.flow}] {describe(ex.command, ex.response)} "
              f"({ex.latency * 1e3:.3f} ms simulated)", file=stream, flush=True)
    return on_exchange


def main(args) -> int:
    # Every check that needs no boot comes first, so that a mistake costs a second,
    # not a boot, and nothing is written (the trace file is created only after).
    foreground.check_free(args.host, args.port)
    if args.seed is not None and args.seed < 0:
        raise InputError(f"seed must be 0 or more, found {args.seed}", key="--seed")
    reads = [("the scenario", args.scenario)]
    if args.trace:
        check_file(args.trace, "--trace", reads=reads)
    if args.eventlog_out:
        check_file(args.eventlog_out, "--eventlog-out", reads=reads)
        if args.trace and os.path.realpath(args.trace) == os.path.realpath(args.eventlog_out):
            raise InputError("is also the --trace file: one would overwrite the other",
                             path=args.eventlog_out, key="--eventlog-out")
    planned = plan(args.scenario, args.domain, seed=args.seed, overrides=args.set,
                   event_log=bool(args.eventlog_out))
    # what the scenario names (its policy, profile, images) is read too, as run and trace
    # -o refuse to overwrite it; known once the scenario is loaded, still before the boot
    reads = planned.sim.scenario.reads(args.scenario)
    if args.eventlog_out:
        check_file(args.eventlog_out, "--eventlog-out", reads=reads)
    err = sys.stderr
    trace_fp = open_output(args.trace, "--trace", reads=reads) if args.trace else None  # as it goes
    stop = Stop()
    try:
        with _noted_signals(stop):
            session = ServeSession.boot(planned, trace_file=trace_fp, stop=stop)
    except BootStopped as stopped:
        print(f"simxen serve: {stopped}"
              + (f"; the trace so far is in {args.trace}" if args.trace not in (None, "-")
                 else ""), file=err, flush=True)
        return foreground.exit_status(signal.Signals[stopped.reason])
    if args.eventlog_out:
        session.write_event_log(args.eventlog_out)
    if not args.quiet:
        session.path.on_exchange = _command_logger(session, err, args.hops)
    server = foreground.start(ResourceManager(session.path), args.protocol, args.host, args.port)
    guest = session.guest
    vtpm = session.host.toolstack.resolve(guest.config.vtpm[0].backend)

    def announce():
        print(f"simxen serve: listening on {foreground.listening_on(server, args.host)} and "
              f"{args.port + 1} "
              f"({args.protocol}): {guest.name}'s vTPM (domid {guest.domid}, backend "
              f"{vtpm.name if vtpm is not None else '?'}), simulated time "
              f"{session.hv.env.now:.6f} s", file=err, flush=True)
    try:
        signum = foreground.wait_until_stopped(server, ready=announce)
    finally:
        with session.path.lock:                 # a command in flight finishes first
            if args.trace:
                session.write_trace(args.trace, trace_fp)
            _summary(session, err, args)
    return foreground.exit_status(signum)


@contextlib.contextmanager
def _noted_signals(stop):
    """While the host boots, SIGTERM and Ctrl-C set ``stop.reason`` (the boot then ends
    between two events, and the trace so far is written) instead of killing the
    process mid-write or raising inside a model step."""
    def note(signum, _frame):
        stop.reason = signal.Signals(signum).name
    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _summary(session, stream, args):
    """What the session did, and with ``--hops`` the percentiles of each hop."""
    path = session.path
    print(f"simxen serve: {path.commands} command(s) through the path, {path.failures} failed; "
          f"simulated time {session.hv.env.now:.6f} s", file=stream, flush=True)
    if args.hops and path.commands:
        records = session.hv.trace.iter_records(kinds=hops.READS, since=session.served_from)
        cmds = [c for c in hops.command_hops(records) if c.dom == session.guest.domid]
        print(hops.format_table(hops.aggregate(cmds)), file=stream, flush=True)
    if args.trace:
        print(f"simxen serve: trace written to {args.trace}", file=stream, flush=True)


def run(argv=None) -> int:
    """``python -m simxen.server.cmd_serve ...``: the command without the ``simxen`` front end."""
    parser = argparse.ArgumentParser(prog="simxen serve", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(main(args) or 0)
    except SimxenError as exc:
        print(f"simxen serve: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:                       # while the host was still booting
        print("simxen serve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())

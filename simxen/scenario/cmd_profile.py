"""Show a timing profile: every op's distribution, where its numbers come from and how sure they are.

::

    simxen profile show                     # the default profile (its chip: slb9670)
    simxen profile show default --chip st33 # with another physical TPM's figures
    simxen profile show my-profile.toml     # a profile file
    simxen profile chips                    # the shipped physical TPM chips

Certainty: ``V`` read in the cited source, ``P`` derived from it (arithmetic or
a close stand-in), ``U`` assumed -- a report marks a latency as an estimate
when more than a fifth of it rests on ``U`` figures. The switches (settings
that are not latencies, such as the guests' kernel era) follow the ops.
"""

import textwrap

from simxen.errors import InputError
from simxen.xen.profile import Profile, shipped_chips


def add_arguments(parser):
    parser.add_argument("action", choices=["show", "chips"],
                        help="show: print a profile; chips: list the shipped physical TPM chips")
    parser.add_argument("name", nargs="?",
                        help="a shipped profile's name or a .toml file (default: default)")
    parser.add_argument("--chip", help="use this chip's physical-TPM figures (see `chips`)")


def _params(op) -> str:
    p = op.params
    fmt = {"fixed": lambda: f"{p['value']:.4g}",
           "uniform": lambda: f"{p['low']:.4g}..{p['high']:.4g}",
           "normal": lambda: f"mean {p['mean']:.4g} std {p['std']:.3g}",
           "lognormal": lambda: f"median {p['median']:.4g} sigma {p['sigma']:.3g}",
           "exponential": lambda: f"mean {p['mean']:.4g}"}[op.dist]
    return f"{op.dist} {fmt()}"


def render(profile, width=100) -> str:
    """The text ``simxen profile show`` prints."""
    out = [f"profile {profile.name}" + (f": {profile.description}" if profile.description else "")]
    if profile.chip:
        out.append(f"physical TPM chip: {profile.chip}"
                   + (f" -- {profile.chip_description}" if profile.chip_description else ""))
    counts = {c: 0 for c in "VPU"}
    for name in profile.ops:
        counts[profile.op(name).certainty] += 1
    out.append(f"{len(profile.ops)} ops: {counts['V']} V (read in the source), {counts['P']} P "
               f"(derived), {counts['U']} U (assumed); times in seconds"
               + (", per byte where the name ends in per_byte" if any(
                   n.endswith("per_byte") for n in profile.ops) else ""))
    out.append("")
    for name in profile.ops:
        op = profile.op(name)
        out.append(f"{name}  [{op.certainty}]  {_params(op)}  (mean {op.mean():.4g})")
        out.extend(textwrap.wrap(f"source: {op.source}", width, initial_indent="    ",
                                 subsequent_indent="      "))
        if op.note:
            out.extend(textwrap.wrap(f"covers: {op.note}", width, initial_indent="    ",
                                     subsequent_indent="      "))
    if profile.switches:
        out.append("")
        out.append("switches")
        for key, value in sorted(profile.switches.items()):
            out.append(f"  {key} = {value!r}")
    return "\n".join(out) + "\n"


def main(args) -> int:
    if args.action == "chips":
        # `chips` lists the shipped chips whatever it is given: refused rather than ignored
        if args.name is not None:
            raise InputError(f"`chips` takes no profile (found {args.name!r}); `simxen "
                             f"profile show {args.name}` prints that one", key="chips")
        if args.chip:
            raise InputError("applies to `show`: `simxen profile show --chip "
                             f"{args.chip}`", key="--chip")
        base = Profile.load("default")
        for chip in shipped_chips():
            print(f"{chip:<10}  {base.with_chip(chip).chip_description}")
        return 0
    profile = Profile.load(args.name or "default")
    if args.chip:
        profile = profile.with_chip(args.chip)
    print(render(profile), end="")
    return 0

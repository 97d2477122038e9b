"""Timing profiles: what every operation costs, read from a TOML file.

No latency literal appears in model code. Model code asks the profile::

    cost = profile.sample("gnttab.map", rng)        # seconds, a float >= 0

and the profile answers from the distribution its file names for that op.
A profile file looks like this (``simxen/profiles/default.toml`` is the one
shipped; ``docs/profiles.rst`` lists every op)::

    [profile]
    name = "default"
    description = "..."

    [ops."evtchn.notify"]
    dist = "lognormal"          # fixed | uniform | normal | lognormal | exponential
    median = 3.0e-6             # parameters depend on dist, all in seconds
    sigma = 0.5
    certainty = "U"             # V verified, P partly verified, U unverified
    source = "assumption: EVTCHNOP_send + remote upcall, 2-10 us"

    [switches]
    "tpmfront.wait" = "poll"    # non-latency settings

Distributions and their parameters:

=============  ==========================  ======================================
``dist``       parameters                  draw
=============  ==========================  ======================================
fixed          ``value``                   always ``value``
uniform        ``low``, ``high``           uniform in ``[low, high)``
normal         ``mean``, ``std``           normal, values below 0 clipped to 0
lognormal      ``median``, ``sigma``       ``median * exp(sigma * N(0, 1))``
exponential    ``mean``                    exponential with that mean
=============  ==========================  ======================================

Ops whose name ends in ``per_byte`` (``memcpy.per_byte``) are a cost per
byte; the caller multiplies. A file with an unknown key, a wrong type or a
missing op raises :class:`simxen.errors.InputError` naming the file and key.
"""

import math
import re
import tomllib
from importlib import resources
from pathlib import Path

from simxen.errors import TOML_TYPES, TOO_DEEP, InputError, did_you_mean, finite, found

#: ops the hypervisor itself charges; every profile must define them.
REQUIRED_OPS = (
    "hypercall",
    "evtchn.notify",
    "evtchn.upcall",
    "gnttab.map",
    "gnttab.unmap",
    "gnttab.copy",
    "xenstore.op",
    "xenstore.watch",
    "memcpy.per_byte",
    "mmio.access",
    "domain.create",
)

#: dist -> its parameter names.
DISTRIBUTIONS = {
    "fixed": ("value",),
    "uniform": ("low", "high"),
    "normal": ("mean", "std"),
    "lognormal": ("median", "sigma"),
    "exponential": ("mean",),
}

CERTAINTIES = ("V", "P", "U")
_OP_NAME = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
_TOP_KEYS = ("profile", "ops", "switches")
_PROFILE_KEYS = ("name", "description", "chip")
_CHIP_KEYS = ("name", "description")
#: Ops a chip file defines all start with this (the physical TPM's command costs).
CHIP_PREFIX = "tpm.ptpm."
_OP_META = ("dist", "source", "certainty", "note")

#: draws a :class:`Sampler` reserves from its stream at once (a block) ...
BATCH = 256
#: ... of which it draws this many first, then twice as many each time (see :class:`Sampler`).
FIRST_BATCH = 16


class Op:
    """One op's distribution, as validated from the file."""

    __slots__ = ("name", "dist", "params", "source", "certainty", "note")

    def __init__(self, name, dist, params, source, certainty, note=""):
        self.name = name
        self.dist = dist
        self.params = params
        self.source = source
        self.certainty = certainty
        self.note = note

    def draw(self, rng, size=None):
        """Draw one value (``size=None``) or an array of ``size`` values."""
        p = self.params
        if self.dist == "fixed":
            return p["value"] if size is None else [p["value"]] * size
        if self.dist == "uniform":
            out = rng.uniform(p["low"], p["high"], size)
        elif self.dist == "normal":
            out = rng.normal(p["mean"], p["std"], size)
            out = max(out, 0.0) if size is None else out.clip(0.0, None)
        elif self.dist == "lognormal":
            out = rng.lognormal(math.log(p["median"]), p["sigma"], size)
        else:
            out = rng.exponential(p["mean"], size)
        return float(out) if size is None else out.tolist()

    def mean(self):
        """The distribution's mean (for reports and sanity checks)."""
        p = self.params
        return {
            "fixed": lambda: p["value"],
            "uniform": lambda: (p["low"] + p["high"]) / 2,
            "normal": lambda: p["mean"],
            "lognormal": lambda: p["median"] * math.exp(p["sigma"] ** 2 / 2),
            "exponential": lambda: p["mean"],
        }[self.dist]()


class Sampler:
    """Draws of one op from one stream, taken a batch at a time.

    Call it for one draw. Hot paths take a draw without a Python call::

        buf = sampler.buf
        cost = buf.pop() if buf else sampler.refill()

    which is exactly ``sampler()``: ``buf`` holds the batch's remaining
    draws, next draw last; ``refill()`` draws the next batch and returns its
    first value. A ``fixed`` op draws nothing from the stream.

    **Blocks and batches.** A sampler's draws are the stream's in blocks of
    :data:`BATCH`: its *k*-th block is the *k*-th run of :data:`BATCH`
    numbers it takes. It draws its first block in growing pieces --
    :data:`FIRST_BATCH`, then twice that, and so on, the last piece what is
    left of the block -- and every later block whole. A numpy generator
    gives the same numbers whether they are asked for one by one or in
    pieces of any size, so the pieces change no draw: they decide only how
    many are drawn ahead of use. That matters because a host has a sampler
    for every op of every domain and most are used a few dozen times in a
    domain's life: a fleet guest's ops held some 4,000 draws that nothing
    would read (about 120 KiB a guest, more than a gigabyte at 10,000
    guests), and the time to draw them.

    When a second sampler is made on the same stream (a domain restarted
    under its old name continues its streams; see
    :meth:`Profile.sampler`), the first one's block is drawn to its end at
    once and both draw whole blocks from then on: each takes the stream's
    numbers in exactly the blocks, and the order, it always did.
    """

    __slots__ = ("buf", "_op", "_rng", "_batch", "_owed")

    def __init__(self, op, rng):
        self.buf = []           #: remaining draws, the next one last
        self._op = op
        self._rng = rng
        self._batch = FIRST_BATCH   # the next piece's size
        self._owed = 0              # draws of the open block not yet drawn

    def refill(self):
        """Fill :attr:`buf` with the next batch (in place) and pop its first draw."""
        buf = self.buf
        op = self._op
        size = self._batch
        if op.dist == "fixed":
            if size < BATCH:
                self._batch = size * 2
            buf.extend([op.params["value"]] * size)
            return buf.pop()
        owed = self._owed or BATCH
        if size < owed:
            self._batch = size * 2
        else:
            size = owed
        self._owed = owed - size
        buf.extend(reversed(op.draw(self._rng, size)))
        return buf.pop()

    def share(self):
        """Another sampler draws from this one's stream from now on: draw the rest of the
        open block (after what :attr:`buf` holds) and take whole blocks from now on."""
        owed = self._owed
        if owed:
            self.buf[:0] = reversed(self._op.draw(self._rng, owed))
            self._owed = 0
        self._batch = BATCH

    def __call__(self):
        buf = self.buf
        return buf.pop() if buf else self.refill()


class Profile:
    """A named set of op distributions and switches."""

    def __init__(self, name, ops, switches, *, path=None, description="", chip=None,
                 chip_description=""):
        self.name = name
        self.description = description
        self.path = path
        #: the physical TPM chip whose figures the ``tpm.ptpm.*`` ops are (None: the file's own)
        self.chip = chip
        self.chip_description = chip_description
        self._ops = dict(ops)
        self._switches = dict(switches)
        # stream -> the first sampler that draws from it: see sampler()
        self._first_sampler = {}

    # -- loading -----------------------------------------------------------

    @classmethod
    def load(cls, name_or_path="default"):
        """Load a shipped profile by name (``"default"``) or a TOML file by path."""
        text_path = str(name_or_path)
        if text_path.endswith(".toml") or "/" in text_path or "\\" in text_path:
            path = Path(text_path)
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read profile ({exc.strerror or exc})", path=path) from None
        else:
            if not re.match(r"^[A-Za-z0-9_-]+$", text_path):
                raise InputError(f"expected a profile name like 'default' or a path to a .toml "
                                 f"file, found {text_path!r}")
            resource = resources.files("simxen") / "profiles" / f"{text_path}.toml"
            path = f"simxen/profiles/{text_path}.toml"
            try:
                data = resource.read_bytes()
            except (OSError, FileNotFoundError):
                shipped = sorted(p.name[:-5] for p in (resources.files("simxen") / "profiles").iterdir()
                                 if p.name.endswith(".toml"))
                raise InputError(f"no such profile {text_path!r}; shipped profiles: "
                                 f"{', '.join(shipped)}") from None
        try:
            doc = tomllib.loads(data.decode("utf-8-sig"))   # a BOM is left out
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"not valid TOML ({exc})", path=path) from None
        except RecursionError:
            raise InputError(f"not a profile: {TOO_DEEP}", path=path) from None
        profile = cls.from_dict(doc, path=path)
        chip = doc.get("profile", {}).get("chip")
        return profile.with_chip(chip) if chip is not None else profile

    def with_chip(self, chip):
        """A copy whose physical-TPM ops (``tpm.ptpm.*``) are those of shipped chip *chip*
        (``simxen/profiles/chips/<chip>.toml``; :func:`shipped_chips` lists them)."""
        if not isinstance(chip, str) or not re.match(r"^[A-Za-z0-9_-]+$", chip):
            raise InputError(f"expected a chip name like 'slb9670', found {chip!r}", path=self.path,
                             key="profile.chip")
        where = f"simxen/profiles/chips/{chip}.toml"
        try:
            data = (resources.files("simxen") / "profiles" / "chips" / f"{chip}.toml").read_bytes()
        except (OSError, FileNotFoundError):
            raise InputError(f"no such chip {chip!r}; shipped chips: {', '.join(shipped_chips())}"
                             f"{did_you_mean(chip, shipped_chips())}", key="chip") from None
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"not valid TOML ({exc})", path=where) from None
        _no_unknown(doc, ("chip", "ops"), None, where)
        meta = doc.get("chip", {})
        _expect_table(meta, "chip", where)
        _no_unknown(meta, _CHIP_KEYS, "chip", where)
        ops = {n: op for n, op in self._ops.items() if not n.startswith(CHIP_PREFIX)}
        for op_name, table in doc.get("ops", {}).items():
            if not op_name.startswith(CHIP_PREFIX):
                raise InputError(f"a chip defines only {CHIP_PREFIX}* ops", path=where,
                                 key=f"ops.{op_name}")
            ops[op_name] = _parse_op(op_name, table, where)
        if CHIP_PREFIX + "default" not in ops:
            raise InputError("missing; every chip defines its default command cost", path=where,
                             key=f"ops.{CHIP_PREFIX}default")
        return Profile(self.name, ops, self._switches, path=self.path,
                       description=self.description, chip=meta.get("name", chip),
                       chip_description=meta.get("description", ""))

    @classmethod
    def from_dict(cls, doc, *, path="<profile>", require=REQUIRED_OPS):
        """Validate a parsed profile document (the TOML file as a dict)."""
        _expect_table(doc, None, path)
        _no_unknown(doc, _TOP_KEYS, None, path)
        meta = doc.get("profile", {})
        _expect_table(meta, "profile", path)
        _no_unknown(meta, _PROFILE_KEYS, "profile", path)
        name = meta.get("name", Path(str(path)).stem)
        _expect_type(name, str, "profile.name", "a string", path)
        description = meta.get("description", "")
        _expect_type(description, str, "profile.description", "a string", path)
        ops_doc = doc.get("ops", {})
        _expect_table(ops_doc, "ops", path)
        ops = {op_name: _parse_op(op_name, table, path) for op_name, table in ops_doc.items()}
        for op_name in require:
            if op_name not in ops:
                raise InputError("missing; expected a table with dist, its parameters, source "
                                 "and certainty", path=path, key=f"ops.{op_name}")
        switches = doc.get("switches", {})
        _expect_table(switches, "switches", path)
        for key, value in switches.items():
            if not _OP_NAME.match(key):
                raise InputError("expected a dotted name", path=path, key=f"switches.{key}")
            if isinstance(value, (dict, list)):
                raise InputError("expected a string, number or boolean", path=path,
                                 key=f"switches.{key}")
        return cls(name, ops, switches, path=path, description=description)

    def with_overrides(self, overrides, *, path=None, known_op=None):
        """A copy with some ops and switches replaced.

        ``overrides`` has the shape of a profile file:
        ``{"ops": {"evtchn.notify": {"dist": "fixed", "value": 1e-6}},
        "switches": {"tpmfront.wait": "interrupt"}}``. An override op needs
        ``dist`` and its parameters; ``source`` and ``certainty`` default to
        "scenario override" and "U".

        With ``known_op`` (a predicate on op names: the ops the model can ask
        for beyond those this profile defines) an override must name an op
        this profile defines or one ``known_op`` accepts, and a switch this
        profile defines -- so a typo (``evtchn.notifyy``) is refused, with the
        closest name, instead of silently changing nothing.
        """
        where = path or self.path
        _expect_table(overrides, None, where)
        _no_unknown(overrides, ("ops", "switches"), None, where)
        ops = dict(self._ops)
        op_doc = overrides.get("ops", {})
        _expect_table(op_doc, "ops", where)
        for op_name, table in op_doc.items():
            if known_op is not None and op_name not in self._ops and not known_op(op_name):
                raise InputError(_unknown_name("op", op_name, self._ops), path=where,
                                 key=f"ops.{op_name}")
            _expect_table(table, f"ops.{op_name}", where)
            table = {"source": "scenario override", "certainty": "U", **table}
            ops[op_name] = _parse_op(op_name, table, where)
        switches = dict(self._switches)
        sw_doc = overrides.get("switches", {})
        _expect_table(sw_doc, "switches", where)
        for key, value in sw_doc.items():
            if known_op is not None and key not in self._switches:
                raise InputError(_unknown_name("switch", key, self._switches), path=where,
                                 key=f"switches.{key}")
            if key in self._switches and type(value) is not type(self._switches[key]) and not (
                    isinstance(value, (int, float)) and isinstance(self._switches[key], (int, float))
                    and not isinstance(value, bool)):
                wanted = TOML_TYPES.get(type(self._switches[key]), "a value of its type")
                raise InputError(f"expected {wanted}, got {found(value)}", path=where,
                                 key=f"switches.{key}")
            switches[key] = value
        return Profile(self.name, ops, switches, path=self.path, description=self.description,
                       chip=self.chip, chip_description=self.chip_description)

    # -- use ---------------------------------------------------------------

    @property
    def ops(self):
        """The op names this profile defines, sorted."""
        return sorted(self._ops)

    def op(self, name):
        """The :class:`Op` called ``name``."""
        try:
            return self._ops[name]
        except KeyError:
            raise InputError("the profile defines no such op", path=self.path,
                             key=f"ops.{name}") from None

    def has(self, name):
        """Whether the profile defines op ``name``."""
        return name in self._ops

    def sample(self, op, rng):
        """One draw, in seconds, of op ``op`` from ``rng``."""
        return self.op(op).draw(rng)

    def sampler(self, op, rng):
        """A fast zero-argument callable drawing op ``op`` from ``rng`` (a :class:`Sampler`).

        Draws are the stream's in blocks of :data:`BATCH`, taken in pieces
        that grow (see :class:`Sampler`); a stream shared by samplers made
        here is shared in those blocks, whatever the pieces, so ``rng`` must
        be drawn from by samplers only. A ``fixed`` op costs no draw at all
        (its ``rng`` may be ``None``).
        """
        spec = self.op(op)
        sampler = Sampler(spec, rng)
        if spec.dist != "fixed":
            first = self._first_sampler.setdefault(rng, sampler)
            if first is not sampler:
                first.share()
                sampler.share()
        return sampler

    def fixed_value(self, op):
        """The value of a ``fixed`` op, or ``None`` if ``op`` is random."""
        spec = self.op(op)
        return spec.params["value"] if spec.dist == "fixed" else None

    def switch(self, name, default=KeyError):
        """The switch called ``name`` (``"tpmfront.wait"``)."""
        try:
            return self._switches[name]
        except KeyError:
            if default is not KeyError:
                return default
            raise InputError("the profile defines no such switch", path=self.path,
                             key=f"switches.{name}") from None

    @property
    def switches(self):
        """All switches as a dict."""
        return dict(self._switches)


def shipped_chips():
    """Names of the physical TPM chips shipped in ``simxen/profiles/chips/``."""
    folder = resources.files("simxen") / "profiles" / "chips"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _parse_op(op_name, table, path):
    key = f"ops.{op_name}"
    if not _OP_NAME.match(op_name):
        raise InputError("expected a dotted name of letters, digits and _", path=path, key=key)
    _expect_table(table, key, path)
    dist = table.get("dist")
    if "dist" not in table:
        # (a scenario's [profile.ops.NAME], or a --set of one of its keys, gives the
        # whole op: it replaces the profile's, it does not change one parameter of it)
        raise InputError(f"missing: an op is a whole table, dist = one of "
                         f"{', '.join(DISTRIBUTIONS)} with that distribution's parameters "
                         "(an override replaces the profile's op, not one of its parameters)",
                         path=path, key=f"{key}.dist")
    if dist not in DISTRIBUTIONS:
        raise InputError(f"expected dist = one of {', '.join(DISTRIBUTIONS)}, "
                         f"got {found(dist)}", path=path, key=f"{key}.dist")
    names = DISTRIBUTIONS[dist]
    _no_unknown(table, _OP_META + names, key, path)
    params = {}
    for pname in names:
        if pname not in table:
            raise InputError(f"missing; {dist} needs {', '.join(names)}", path=path,
                             key=f"{key}.{pname}")
        value = table[pname]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not finite(value):
            raise InputError(f"expected a number of seconds, got {found(value)}", path=path,
                             key=f"{key}.{pname}")
        if value < 0 or (pname in ("median", "mean") and dist in ("lognormal", "exponential")
                         and value == 0):
            raise InputError(f"expected a positive number, got {value!r}", path=path,
                             key=f"{key}.{pname}")
        params[pname] = float(value)
    if dist == "uniform" and params["high"] < params["low"]:
        raise InputError("expected high >= low", path=path, key=f"{key}.high")
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise InputError("expected source = a citation string", path=path, key=f"{key}.source")
    certainty = table.get("certainty")
    if certainty not in CERTAINTIES:
        raise InputError(f"expected certainty = one of {', '.join(CERTAINTIES)}, got {certainty!r}",
                         path=path, key=f"{key}.certainty")
    note = table.get("note", "")
    _expect_type(note, str, f"{key}.note", "a string", path)
    return Op(op_name, dist, params, source, certainty, note)


def _unknown_name(what, name, known):
    return (f"the profile defines no {what} {name!r}, so overriding it changes nothing"
            f"{did_you_mean(name, known)}")


def _expect_table(value, key, path):
    if not isinstance(value, dict):
        raise InputError(f"expected a table, got {found(value)}", path=path,
                         key=key or "(top level)")


def _expect_type(value, kind, key, expected, path):
    if not isinstance(value, kind):
        raise InputError(f"expected {expected}, got {found(value)}", path=path, key=key)


def _no_unknown(table, allowed, key, path):
    for name in table:
        if name not in allowed:
            where = f"{key}.{name}" if key else name
            raise InputError(f"unknown key; expected one of {', '.join(allowed)}", path=path,
                             key=where)

"""A dict that makes each value the first time its key is looked up.

The hot paths look a thing up by key many times and make it once: a
domain's sampler of a profile op, the trace's decision for a record kind.
With :class:`Memo` that is one dict lookup per use, with no ``None`` check
and no fallback call beside it::

    samplers = Memo(make_sampler)
    samplers["hypercall"]           # made now, then found
"""


class Memo(dict):
    """``{key: make(key)}``, each value made on the first lookup of its key."""

    __slots__ = ("_make",)

    def __init__(self, make):
        super().__init__()
        self._make = make

    def __missing__(self, key):
        value = self[key] = self._make(key)
        return value

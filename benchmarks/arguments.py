"""Command-line argument types the benchmark scripts share.

A benchmark's sizes -- round trips, commands, guests, repetitions, seconds --
are all positive: a mistyped one (``--sizes 1O0``, ``--requests 0``,
``--seconds -1``) is argparse's one-line usage error with exit status 2,
before anything runs, rather than a traceback, a division by zero after a
minute of work, or a run of some default size the user did not ask for::

    ap.add_argument("--requests", type=count, default=20000)
    ap.add_argument("--sizes", type=counts, default="1,10,100,1000")
"""

import argparse

__all__ = ["count", "counts", "duration"]


def count(text):
    """A whole number of at least one (argparse ``type=``)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {n}")
    return n


def counts(text):
    """Whole numbers of at least one, separated by commas (``"1,10,100"``): a list."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, "
                                         f"found {text!r}")
    return [count(item) for item in items]


def duration(text):
    """A finite number of seconds greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, found {text}")
    return value

"""Output files a command will write: checked before any work starts.

A run may take minutes; finding out at its end that ``--trace`` names a
folder, a folder that does not exist or a place nobody may write loses the
run. :func:`check_file` finds those before anything is simulated and says so
in one line (an :class:`~simxen.errors.InputError`, exit status 2)::

    check_file(args.output, "-o")          # raises, or returns the Path
    fp = open_output(args.trace, "--trace")  # the same checks, then the file open for writing
    make_folder(args.out, "--out")         # an output folder, made (with its parents) now
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from simxen.errors import InputError


def file_name(text) -> str:
    """argparse ``type=`` of an option naming an output file or folder: an empty name
    (``--trace "$OUT"`` with ``OUT`` unset) is refused, not read as the option left out --
    a run that silently writes no trace loses what it was run for."""
    if not text:
        raise argparse.ArgumentTypeError("expected a name, found an empty one")
    return text


def check_file(name, key, *, reads=()) -> Path:
    """The output file *name* as a :class:`Path`, once it is known that it can be
    written: not a folder, in a folder that exists, writable, and none of *reads*
    -- ``(what, path)`` of the files the command reads (``("the scenario",
    args.scenario)``, a ``--from`` trace), which writing would destroy, the very
    thing to run or export gone (``-`` is standard output and always passes)."""
    path = Path(name)
    if str(name) == "-":
        return path
    if path.is_dir():
        raise InputError("is a folder; expected a file name", path=path, key=key)
    for what, source in reads:
        if source is not None and path.exists() and Path(source).exists() \
                and os.path.samefile(path, source):
            same = "" if str(source) == str(name) else f" ({source})"
            raise InputError(f"is {what}{same}, which this command reads: writing it would "
                             "destroy it; give another file", path=path, key=key)
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder", path=path, key=key)
    if not folder.is_dir():
        raise InputError(f"folder does not exist: {folder}", path=path, key=key)
    if path.exists() and not os.access(path, os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("cannot write here (permission denied)", path=path, key=key)
    return path


def open_output(name, key, *, reads=()):
    """Open output file *name* for writing now, before anything is simulated
    (:func:`check_file`'s checks, *reads* among them, then the open itself), so
    that a folder, a missing folder, an unwritable place or an input of the
    command is one line and exit 2 rather than a lost run or a lost file -- and
    so that the file can be written as the run goes. ``-`` is standard output."""
    if name == "-":
        return sys.stdout
    path = check_file(name, key, reads=reads)
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", path=path, key=key) from None


def make_folder(name, key) -> Path:
    """Make output folder *name* (and its parents) now, before the work that fills it,
    and return it as a :class:`Path`: a file of that name, a parent that is a file or
    a place where no folder can be made is one line naming *key*, not a traceback
    after the work."""
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise InputError("is a file; expected a folder", path=path, key=key)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot make this folder: {exc.strerror}", path=path,
                         key=key) from None
    return path

"""Xen's own public headers, compiled by gcc, as the oracle for simxen's layouts.

Debian's ``libxen-dev`` installs the public headers of the Xen tree
(``xen/include/public/``) under ``/usr/include/xen``: ``io/ring.h``,
``io/tpmif.h``, ``io/xenbus.h``, ``io/xs_wire.h``, ``grant_table.h``,
``event_channel.h``, ``errno.h`` and ``xen.h``. A test writes a small C
program that includes them, compiles it with gcc and runs it; whatever it
prints is what Xen's C code sees, so simxen is compared with the compiler's
reading of Xen's text rather than with our own copy of it.

:func:`require_xen_headers` skips the test when gcc or the headers are
missing (and fails it under ``SIMXEN_REQUIRE_TOOLS=1``, as in CI, where
``scripts/setup-system.sh`` installs them); :func:`compile_c` builds one
program; :data:`PRELUDE` is the common start of every such program.
"""

import os
import subprocess

from tpm_serve_helpers import missing, require_tool

#: where libxen-dev puts ``xen/include/public``
XEN_INCLUDE = "/usr/include/xen"

#: The top of every oracle program. ``__XEN_TOOLS__`` selects the newest
#: interface version (what a toolstack compiles against), under which
#: ``ring.h`` expects the includer to say what its barriers are: a full
#: barrier for all three, more than a single-threaded program needs.
PRELUDE = r"""
#define __XEN_TOOLS__ 1
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#define xen_mb()  __sync_synchronize()
#define xen_rmb() __sync_synchronize()
#define xen_wmb() __sync_synchronize()
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/io/ring.h>
#include <xen/io/tpmif.h>
#include <xen/io/xenbus.h>
#include <xen/io/xs_wire.h>
"""


def require_xen_headers():
    """gcc's path, once gcc and Xen's public headers are known to be installed."""
    gcc = require_tool("gcc", "gcc")
    for header in ("io/ring.h", "io/tpmif.h", "io/xs_wire.h", "grant_table.h"):
        if not os.path.exists(os.path.join(XEN_INCLUDE, header)):
            missing(f"Xen's public header xen/include/public/{header}", "libxen-dev")
    return gcc


def compile_c(source, directory, name):
    """Compile ``source`` (C, :data:`PRELUDE` not included) to ``directory/name``.

    Warnings are errors: a header the program misreads (a wrong type, a
    sign mix-up in a comparison) should stop the test, not slip through.
    """
    gcc = require_xen_headers()
    src = directory / f"{name}.c"
    src.write_text(PRELUDE + source)
    exe = directory / name
    done = subprocess.run([gcc, "-std=gnu11", "-O1", "-Wall", "-Wextra", "-Werror",
                           "-o", str(exe), str(src)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"gcc failed on {src}:\n{done.stderr}"
    return exe

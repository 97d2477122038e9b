"""Experiments: many runs of one scenario, read as data.

This package sits above :mod:`simxen.scenario` and only uses what any user
of a scenario has -- a file, ``--set`` overrides, a seed, and the metrics
the scenario publishes (:mod:`simxen.scenario.metrics`). Nothing below it
knows that an experiment exists.

* :mod:`simxen.experiment.sweep` -- the cross product of ``--vary`` values
  times R seeded replications, run on local processes or a Dask cluster,
  written to ``runs.csv`` and ``summary.csv``;
* :mod:`simxen.experiment.plot` -- pictures of a ``summary.csv``.

``docs/throughput-lab.rst`` tells how to design a sweep and read its output.
"""


def need(*modules):
    """Import *modules* or say, in one line, which extra installs them."""
    import importlib

    from simxen.errors import InputError
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise InputError(f"this command needs {name}: pip install 'simxen[lab]'") from None

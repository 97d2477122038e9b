"""No module reaches into another module's private state.

An attribute whose name starts with one underscore belongs to the module that
defines it; only that module reads or writes it. The hot path that once wrote
the trace's row list from the event channels, or set SimPy's private event
fields from the domain, now calls the owners' public methods, and this test
keeps it so -- the way ``tests/test_layers.py`` keeps the import layers.

The rule, for every module ``M`` under ``simxen/`` and every attribute
expression ``X._name`` in it (read, write or delete; ``_name`` starts with
exactly one underscore -- dunders such as ``__init__`` and ``__class__`` are
Python's, not a module's):

1. ``X`` is ``self`` or ``cls``: an object using its own state. Allowed.
2. ``M`` owns ``_name``: ``M`` defines it as a function or class (at any
   depth), as a module-level or class-body name, in a ``__slots__`` list,
   by assigning ``self._name`` / ``cls._name`` in one of its classes, or
   as a keyword argument (``parser.set_defaults(_module=...)`` makes the
   attribute ``args._module``). Allowed, on any object: a module may use its private names on every
   object of its own classes (``port._x`` of another ``Port``).
3. Anything else fails: ``M`` would be using state another module owns.

``from simxen.other import _name`` fails for the same reason.

SimPy's own private fields (``Event._ok``/``_value``, ``Environment._now``,
``Process._target`` ...: found by looking at SimPy's objects, so a new
SimPy version's names are included) are a stricter case: they may appear
only in :mod:`simxen.xen.simpy_internals` (``succeed_at``, ``rearm``, and the credit2
scheduler's ``schedule_late`` and ``defer_callbacks``), the small, commented
functions that step around SimPy's public API (setup.cfg pins the SimPy
versions they were tested with). An assignment ``self._value = ...`` in a
subclass of a SimPy class does not make the name ``M``'s own. Nor may a
string naming one of them (``attrgetter("_now")``) appear anywhere else.
"""

import ast
from pathlib import Path

import pytest
import simpy

PACKAGE = Path(__file__).resolve().parents[1] / "simxen"

#: the one place SimPy's private fields may be used: (module path, its functions)
SIMPY_INTERNALS = ("xen/simpy_internals.py",
                   ("succeed_at", "rearm", "schedule_late", "defer_callbacks"))


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _simpy_private_names():
    env = simpy.Environment()

    def process():
        yield env.timeout(0)
    objects = (env, env.event(), env.timeout(1), env.process(process()))
    names = set()
    for obj in objects:
        for name in list(vars(obj)) + [n for cls in type(obj).__mro__ for n in vars(cls)]:
            if _private(name):
                names.add(name)
    return names


SIMPY_PRIVATE = _simpy_private_names()


def _simpy_imports(tree):
    """Names this module imported from SimPy (base classes of SimPy subclasses)."""
    names = {"simpy"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "simpy":
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _is_simpy_class(cls, simpy_names):
    for base in cls.bases:
        root = base
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in simpy_names:
            return True
    return False


def _owned_names(tree):
    """Private names the module defines (rule 2), and those it defines only in SimPy subclasses."""
    simpy_names = _simpy_imports(tree)
    owned, in_simpy_class = set(), set()

    def visit(node, simpy_class):
        for child in ast.iter_child_nodes(node):
            inner = simpy_class
            if isinstance(child, ast.ClassDef):
                owned.add(child.name)
                inner = _is_simpy_class(child, simpy_names)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                owned.add(child.name)
            elif isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                owned.add(child.id)
            elif isinstance(child, ast.keyword) and child.arg:
                owned.add(child.arg)
            elif (isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Store)
                  and isinstance(child.value, ast.Name) and child.value.id in ("self", "cls")):
                (in_simpy_class if simpy_class else owned).add(child.attr)
            elif (isinstance(child, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in child.targets)):
                for const in ast.walk(child.value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        owned.add(const.value)
            visit(child, inner)
    visit(tree, False)
    return owned, in_simpy_class - owned


def _functions(tree):
    """``node -> name of the innermost enclosing function`` for attribute nodes."""
    where = {}

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                else function
            if isinstance(child, ast.Attribute):
                where[child] = function
            visit(child, inner)
    visit(tree, None)
    return where


def violations(path, rel=None):
    """Every private access of ``path`` that the rule above forbids, as messages.

    ``rel`` is the module's path under ``simxen/`` (by default worked out from ``path``).
    """
    rel = rel or path.relative_to(PACKAGE).as_posix()
    tree = ast.parse(path.read_text())
    owned, simpy_only = _owned_names(tree)
    where = _functions(tree)
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and node.value in SIMPY_PRIVATE
                and rel != SIMPY_INTERNALS[0]):
            found.append(f"{rel}:{node.lineno}: names SimPy's private {node.value} outside "
                         f"{SIMPY_INTERNALS[0]}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("simxen"):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{rel}:{node.lineno}: imports {alias.name} from {node.module}")
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        name = node.attr
        text = f"{rel}:{node.lineno}: {ast.unparse(node)}"
        if name in SIMPY_PRIVATE and name not in owned:
            if rel != SIMPY_INTERNALS[0] or where.get(node) not in SIMPY_INTERNALS[1]:
                found.append(f"{text} uses SimPy's private {name} outside "
                             f"{SIMPY_INTERNALS[0]} ({', '.join(SIMPY_INTERNALS[1])})")
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if name not in owned or name in simpy_only:
            found.append(f"{text} reaches into another module's private {name}")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_private_access_across_modules(path):
    assert violations(path) == []


def test_the_rule_catches_what_it_should(tmp_path):
    """The checker itself: each forbidden shape is found, each allowed one is not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from simpy.events import Event\n"
        "from simxen.xen.trace import _jsonable\n"          # forbidden import
        "class Mine:\n"
        "    __slots__ = ('_slot',)\n"
        "    def __init__(self):\n"
        "        self._own = 1\n"
        "    def peer(self, other):\n"
        "        return other._own + other._slot\n"           # allowed: this module's names
        "    def _helper(self):\n"
        "        return self.__class__\n"                     # allowed: dunder
        "def reach(trace, env):\n"
        "    trace._rows.append(1)\n"                         # forbidden: the trace's
        "    return env._now\n"                               # forbidden: SimPy's
        "class Wait(Event):\n"
        "    def __init__(self, env):\n"
        "        self._value = None\n"                        # forbidden: SimPy's, even on self
        "clock = __import__('operator').attrgetter('_now')\n"  # forbidden: SimPy's, by name
    )
    found = violations(sample, "sample.py")
    assert sorted(int(line.split(":")[1]) for line in found) == [2, 12, 13, 16, 17]

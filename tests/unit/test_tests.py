"""The tests' own rule: no test touches a private attribute (``obj._x``).

An AST walk over every module of ``tests/``: an attribute whose name starts with
one underscore (a dunder is public) is a private touch unless it is read on
``self``, ``cls`` or ``super()`` (a class of the tests reaching its own or its
base's), and so is the same name given as a string to ``setattr`` and its kin
(``monkeypatch.setattr(module, "_x", ...)``). A test that needs a private's value
asks the object through a public way instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parents[1]

# (module under tests/, the touch as written) -> why it stays, for now.
ALLOWED: dict[tuple[str, str], str] = {
    ("sink_worker.py", "os._exit"): "the standard library's exit for a forked child: "
    "public despite its name (no cleanup of the state it shares with its parent)",
}
OWN = {"self", "cls"}
BY_NAME = {"setattr", "getattr", "delattr", "hasattr"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own(node: ast.expr) -> bool:
    """``self``, ``cls`` or ``super()``: the class reaching its own members."""
    if isinstance(node, ast.Name):
        return node.id in OWN
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def _named_by_string(call: ast.Call) -> list[str]:
    """The private names a ``setattr``-like call gives as strings: ``(obj, "_x")`` or
    monkeypatch's ``("module._x")``."""
    func = call.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    if name not in BY_NAME:
        return []
    texts = [a.value for a in call.args[:2] if isinstance(a, ast.Constant)]
    return [t for t in texts if isinstance(t, str) and is_private(t.rsplit(".", 1)[-1])]


def private_touches(path: Path) -> list[tuple[int, str]]:
    """Every private touch in the module at ``path``: (line, the touch as written)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and is_private(node.attr) and not _own(node.value):
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call):
            found += [(node.lineno, repr(text)) for text in _named_by_string(node)]
    return sorted(found)


def all_touches() -> dict[tuple[str, str], list[int]]:
    """Every private touch under ``tests/``, by (module, touch): the lines."""
    touches: dict[tuple[str, str], list[int]] = {}
    for path in sorted(TESTS.rglob("*.py")):
        module = path.relative_to(TESTS).as_posix()
        for line, touch in private_touches(path):
            touches.setdefault((module, touch), []).append(line)
    return touches


def test_no_test_touches_a_private_attribute() -> None:
    touches = all_touches()
    unallowed = [
        f"{m}:{lines[0]} {t}" for (m, t), lines in touches.items() if (m, t) not in ALLOWED
    ]
    assert unallowed == []


def test_every_allowed_touch_is_still_there() -> None:
    # an entry whose touch is gone is dropped, not kept as a standing excuse
    assert sorted(set(ALLOWED) - set(all_touches())) == []


def test_the_walk_catches_a_planted_private_touch(tmp_path: Path) -> None:
    module = tmp_path / "test_planted.py"
    module.write_text(
        "def test_x(obj, monkeypatch):\n"
        "    assert obj._secret.size == obj.__class__.__name__\n"
        "    monkeypatch.setattr(obj, '_limit', 2)\n"
        "    monkeypatch.setattr('collector.points.lineproto._CACHE', 2)\n"
        "    setattr(obj, 'public', 1)\n"
        "class Server(Base):\n"
        "    def _config(self):\n"
        "        return super()._config(), self._path, cls._made\n"
    )
    assert private_touches(module) == [
        (2, "obj._secret"),
        (3, "'_limit'"),
        (4, "'collector.points.lineproto._CACHE'"),
    ]

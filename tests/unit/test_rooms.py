"""The house's floors: no room of ``collector/`` imports a room above it.

Rooms on one floor are siblings and import none of each other. An AST walk over
every module, so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import collector

ROOT = Path(collector.__file__).parent

# Lowest floor first; docs/ARCHITECTURE.md draws the same picture.
FLOORS: list[set[str]] = [
    {"base"},
    {"gate"},
    {"points"},
    {"config"},
    {"sink", "keys", "session"},
    {"supervisor"},
    {"telemetry"},
    {"devtools"},
    {"app"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}


def imported_rooms(path: Path) -> set[str]:
    """The rooms of ``collector`` that the module at ``path`` imports."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "collector" and len(parts) > 1 and parts[1] in FLOOR:
                rooms.add(parts[1])
    return rooms


def room_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else None


def wrong_way_imports() -> list[str]:
    """Every import that goes up a floor or sideways, as ``module -> room``."""
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        room = room_of(path)
        if room is None:
            continue
        for other in imported_rooms(path) - {room}:
            if FLOOR[other] >= FLOOR[room]:
                wrong.append(f"{path.relative_to(ROOT)} -> {other}")
    return wrong


def test_every_folder_of_collector_is_a_room_on_a_floor() -> None:
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(FLOOR)


def test_no_loose_modules_beside_the_rooms() -> None:
    assert sorted(p.name for p in ROOT.glob("*.py")) == ["__init__.py"]


def test_no_room_imports_one_above_it_or_beside_it() -> None:
    assert wrong_way_imports() == []


def test_the_walk_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from collector.supervisor.slot import Slot\n")
    assert imported_rooms(module) == {"supervisor"}

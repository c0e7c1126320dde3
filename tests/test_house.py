"""The house rules of the package: module size, a docstring on every module, no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "keyedcache"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Dotted name -> path of every module of the package, migrations aside."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports anywhere in its body (function-level ones too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            # The deepest package module the import names (a name may be an attribute).
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_module_is_over_the_size_limit() -> None:
    over = {
        name: count
        for name, path in modules().items()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert over == {}


def test_every_module_starts_with_a_docstring() -> None:
    missing = [
        name
        for name, path in modules().items()
        if path.read_text().strip() and ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert missing == []


def test_the_package_imports_form_no_circle() -> None:
    found = modules()
    known = set(found)
    graph = {name: imports_of(name, path, known) for name, path in found.items()}
    # A package's __init__ re-exporting its submodules is not a circle of the
    # flow: drop edges from a package to its own submodules.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_the_circle_finder_finds_a_circle(tmp_path: Path) -> None:
    # The check above must be able to fail: two modules importing each other.
    (tmp_path / "a.py").write_text('"""A."""\nfrom keyedcache import b\n')
    (tmp_path / "b.py").write_text('"""B."""\nimport keyedcache.a\n')
    known = {"keyedcache.a", "keyedcache.b"}
    assert imports_of("keyedcache.a", tmp_path / "a.py", known) == {"keyedcache.b"}
    assert imports_of("keyedcache.b", tmp_path / "b.py", known) == {"keyedcache.a"}

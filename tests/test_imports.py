"""The package's import graph: no circle among module-level imports, and every module imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import damoc

SRC = Path(damoc.__file__).parent


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _top_level_imports(name: str, path: Path) -> set[str]:
    """The damoc modules ``name`` imports when it is imported: its module-level imports (those under
    ``if TYPE_CHECKING`` aside), with the packages on the way, its own packages excepted (they are
    imported before it)."""
    out = set()
    nodes = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            nodes.append(node)
        elif isinstance(node, ast.Try) or (
            isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test)
        ):
            nodes += [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in names:
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            parts = target.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if target in MODULES)
    return {t for t in out if t in MODULES and t != name and not name.startswith(t + ".")}


def test_no_import_circle():
    graph = {name: _top_level_imports(name, path) for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            circle = visit(node)
            assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_graph_sees_a_known_edge():
    """The parser is not blind: the CLI's entry module imports damoc.errors at module level."""
    assert "damoc.errors" in _top_level_imports("damoc.cli", MODULES["damoc.cli"])


def test_every_module_imports():
    """Every module of the package imports (one fresh interpreter, in name order; ``__main__`` runs the
    CLI, so it is left out)."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    names = sorted(n for n in MODULES if not n.endswith("__main__"))
    res = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]

"""The package's import graph: no cycles between modules, and a light ``--help``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "glmasr_live"


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _eager_imports(path: Path, known: set[str]) -> set[str]:
    """Package modules imported at module level, ``if TYPE_CHECKING:`` blocks included (a type
    that needs its user's module is a cycle too); imports inside functions are deferred on
    purpose and not counted."""
    found: set[str] = set()
    body = ast.parse(path.read_text(encoding="utf-8")).body
    for block in [n for n in body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]:
        body += block.body
    for node in body:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name in known}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_lead_in_a_circle():
    paths = {_module(p): p for p in PKG.rglob("*.py")}
    known = set(paths)
    graph = {name: _eager_imports(path, known) - {name} for name, path in paths.items()}
    # a package's __init__ importing its own submodules is not a cycle a reader trips on
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_help_imports_neither_numpy_nor_webrtcvad():
    code = (
        "import sys, contextlib, io\n"
        "from glmasr_live import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "print(sorted(m for m in ('numpy', 'webrtcvad', 'torch', 'textual') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

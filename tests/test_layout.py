"""The layering rules the README states, checked on the source (module-level and local imports)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "glmasr_live"

# library -> the only places (package-relative paths, prefixes) that may import it.
# devtools/training/ is the demo model's trainer: it builds batches as tensors, runs the model's
# internals and steps an optimiser, so it needs torch and transformers; the product never
# imports it (test_the_product_never_imports_the_developer_tools).
ONLY_IN = {
    "torch": ("asr/", "devtools/training/"),
    "transformers": ("asr/", "devtools/training/"),
    "textual": ("tui/",),
    "sounddevice": ("audio/capture.py", "audio/devices.py"),
    "aiohttp": ("server/",),
}
# package -> subpackages it must not import (imports go downward)
NOT_FROM = {
    "asr/": ("glmasr_live.server", "glmasr_live.tui", "glmasr_live.captions", "glmasr_live.commands"),
    "audio/": ("glmasr_live.asr", "glmasr_live.server", "glmasr_live.tui", "glmasr_live.commands"),
    "captions/": ("glmasr_live.server", "glmasr_live.tui", "glmasr_live.commands"),
    "server/": ("glmasr_live.tui", "glmasr_live.commands", "glmasr_live.pipeline"),
    "policy.py": ("glmasr_live.asr", "glmasr_live.server", "glmasr_live.captions"),
}
# package -> the only places that may import it (the most specific entry applies). The developer
# tools sit on top: only they and the subcommands that run them (commands/: the benchmarks and
# the eval harness) import them; the trainer is run by its own entry points only.
IMPORTED_ONLY_FROM = {
    "glmasr_live.devtools.training": ("devtools/training/",),
    "glmasr_live.devtools": ("devtools/", "commands/"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_heavy_libraries_are_imported_only_where_the_readme_says():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = ONLY_IN.get(top)
            if allowed is not None and not rel.startswith(allowed):
                bad.append(f"{rel} imports {name}")
    assert not bad, bad


def test_imports_go_downward():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for prefix, banned in NOT_FROM.items():
            if rel.startswith(prefix):
                bad += [f"{rel} imports {n}" for n in _imports(path) if n.startswith(banned)]
    assert not bad, bad


def _modules_and_members(path: Path) -> set[str]:
    """``_imports`` plus ``module.name`` for every ``from module import name`` (which may be a
    submodule: ``from glmasr_live.devtools import training``)."""
    names = _imports(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_the_product_never_imports_the_developer_tools():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for name in _modules_and_members(path):
            for package, allowed in IMPORTED_ONLY_FROM.items():
                if name == package or name.startswith(package + "."):
                    if not rel.startswith(allowed):
                        bad.append(f"{rel} imports {name}")
                    break
    assert not bad, bad

"""The package's import structure: no import circles, and a config that loads no network code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from gmdrit_cli.config.schema import FAMILY_NAMES
from gmdrit_cli.families import MODEL_FAMILIES

PACKAGE = Path(__file__).resolve().parents[1] / "gmdrit_cli"


def test_config_family_names_match_the_registry():
    assert tuple(MODEL_FAMILIES) == FAMILY_NAMES


def test_importing_the_config_loads_no_model_or_network_code():
    """The config tree reads the families' names and their config sections (families/<name>/config.py), never
    their networks, losses or torch: validating a preset stays fast and light."""
    code = (
        "import json, sys; import gmdrit_cli.config.schema; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('gmdrit_cli', 'torch')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(out.stdout)
    families = [m for m in loaded if m.startswith("gmdrit_cli.families.")]
    assert "gmdrit_cli.families.gmdrit.config" in loaded  # the sections are read ...
    assert not [m for m in loaded if m == "torch" or m.startswith("torch.")]  # ... without torch
    assert all(m == "gmdrit_cli.families.registry" or m.endswith(".config") or m.count(".") == 2 for m in families), (
        families
    )


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """Package modules ``path`` imports when it is imported (module level, not under TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found |= set(subs) if subs else ({target} if target in modules else set())
    return found - {name}


def test_no_import_circles():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _top_level_imports(path, set(files)) for name, path in files.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, circles

"""The control plane's layout is its rules: `chalicelib/` is grouped by domain, the
groups import one way only, and no module imports another that imports it back (not
even from inside a function).

    platform  <-  access, social  <-  rooms  <-  media
                                      rooms  <-  alerts (also access, social)
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "functions" / "chalicelib"
# What each group may import from chalicelib, besides itself.
ALLOWED = {
    "platform": set(),
    "access": {"platform"},
    "social": {"platform"},
    "rooms": {"platform", "social"},
    "media": {"platform", "social", "rooms"},
    "alerts": {"platform", "access", "social", "rooms"},
}


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p
            for p in PACKAGE.rglob("*.py")}


def _imports(module: str, path: Path) -> set[str]:
    """Every chalicelib module `module` imports, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    known = _modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                name = f"{target}.{alias.name}"
                found.add(name if name in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known and name != module
            and not name.endswith(("__init__",))}


def _graph() -> dict[str, set[str]]:
    return {module: _imports(module, path) for module, path in _modules().items()}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else "top"


def test_every_module_belongs_to_a_group() -> None:
    loose = [m for m in _modules() if _group(m) not in ALLOWED and m != "chalicelib.__init__"
             and m != "chalicelib"]
    assert loose == []


def test_groups_import_one_way() -> None:
    broken = [f"{a} -> {b}" for a, targets in _graph().items() for b in targets
              if _group(b) != _group(a) and _group(b) not in ALLOWED[_group(a)]]
    assert broken == []


def test_no_module_imports_itself_back() -> None:
    loop: list[str] = []
    try:
        graphlib.TopologicalSorter(_graph()).prepare()
    except graphlib.CycleError as found:
        loop = list(found.args[1])
    assert loop == [], f"an import loop: {' -> '.join(loop)}"

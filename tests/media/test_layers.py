"""The media node's layout is its rules (media_node/README.md): the supervisor never
loads the worker stack, and no layer imports one above it.

    shared (media_node/*.py)  <-  transport  <-  audio  <-  worker
    shared                    <-  hls                   <-  worker
    shared                    <-  supervisor
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "media_node"
# What each layer may import from the node, besides itself.
ALLOWED = {
    "shared": {"shared"},
    "transport": {"shared", "transport"},
    "audio": {"shared", "transport", "audio"},
    "hls": {"shared", "hls"},
    "worker": {"shared", "transport", "audio", "hls", "worker"},
    "supervisor": {"shared", "supervisor"},
}
WORKER_STACK = ("aiortc", "aioice", "av", "pylibsrtp", "numpy")


def _layer(module: str) -> str:
    if module == "media_node.__main__":
        return "supervisor"  # `python -m media_node` runs the supervisor
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in ALLOWED else "shared"


def _imports(path: Path) -> list[str]:
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
                names = [f"{target}.{alias.name}" for alias in node.names] \
                    if node.module is None else [target]
            else:
                names = [node.module or ""]
            found += names
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.startswith("media_node.")]


def test_no_layer_imports_one_above_it() -> None:
    broken = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        layer = _layer(module)
        for target in _imports(path):
            if _layer(target) not in ALLOWED[layer]:
                broken.append(f"{module} ({layer}) imports {target} ({_layer(target)})")
    assert broken == []


def test_the_supervisor_loads_no_part_of_the_worker_stack() -> None:
    probe = (
        "import sys, media_node.__main__, media_node.supervisor.main\n"
        f"stack = {WORKER_STACK!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in stack or "
        "m.startswith(('media_node.worker', 'media_node.audio', 'media_node.transport')))\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout

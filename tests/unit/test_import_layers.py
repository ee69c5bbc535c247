"""The layers of docs/ARCHITECTURE.md hold: no import cycles (lazy imports inside functions count
too: they only hide a cycle), and no module imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

from backend import PROJECT_ROOT

# Lowest first; a module may import from its own layer and the ones below.
LAYERS = (
    ("stclient",),
    ("backend",),                                    # the package itself: PROJECT_ROOT only
    ("backend.atomicfile", "backend.imageio", "backend.pixels", "backend.data"),
    ("backend.networks",),
    ("backend.perf",),
    ("backend.engines", "backend.optim"),        # optim: the optimisation engines' maths
    ("backend.modelstore",),
    ("backend.runtime",),
    ("backend.batch",),
    ("backend.daemon", "backend.training"),
    ("backend.commands", "backend.cli", "backend.__main__"),
)
PLUGIN = ("stgimp",)                 # the GIMP side: above stclient, beside the whole backend


def _modules() -> dict[str, Path]:
    found = {}
    for base, folder in (("", PROJECT_ROOT / "backend"), ("", PROJECT_ROOT / "stclient"),
                         ("", PROJECT_ROOT / "plugin" / "style_transfer" / "stgimp")):
        root = folder.parent
        for path in folder.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{alias.name}" for alias in node.names
                    if f"{target}.{alias.name}" in modules]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(target)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(name: str) -> int:
    if name.split(".")[0] in PLUGIN:
        return len(LAYERS)
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{name} is in no layer of this test (and docs/ARCHITECTURE.md)"
    return best[0]


def test_no_import_cycles():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_no_upward_imports():
    upward = [f"{source} -> {target}" for source, targets in sorted(_graph().items())
              for target in sorted(targets)
              if _layer(target) > _layer(source)
              or (target.split(".")[0] in PLUGIN) != (source.split(".")[0] in PLUGIN)
              and not target.startswith("stclient")]
    assert not upward, "\n".join(upward)


def test_the_checks_can_fail(tmp_path):
    """The layer rule really orders the packages: an engine importing the Runtime is upward."""
    assert _layer("backend.runtime") > _layer("backend.engines.adain")
    assert _layer("stgimp.dialog") > _layer("stclient.registry")
    assert _layer("backend.perf.fast") > _layer("backend.networks.cyclegan")

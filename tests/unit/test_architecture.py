"""The package's layering, read from its import statements (every one, nested ones too).

Data moves one way: cli/api → runtime → batch → pipeline → delivery/format/store → model.
These tests keep it that way: a package imports only the packages its row of
docs/architecture.md allows, and no modules or packages import each other in a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Final

import pytest

import xavyo_siem

ROOT: Final = Path(xavyo_siem.__file__).parent

# What each part of the package may import from the rest of it (besides itself). A part is
# a subpackage or a top-level module; keep this table and docs/architecture.md's together.
_BASE: Final = frozenset({"errors", "speedups"})
ALLOWED: Final[dict[str, frozenset[str]]] = {
    "errors": frozenset(),
    "speedups": frozenset(),
    "_speedups": frozenset(),
    "settings": frozenset({"errors"}),
    "model": _BASE,
    "sample": _BASE | {"model"},
    "crypto": _BASE | {"settings"},
    "egress": _BASE | {"settings"},
    "format": _BASE | {"model"},
    "delivery": _BASE | {"model", "egress"},
    "store": _BASE | {"model"},
    "manifest": _BASE | {"model", "format"},
    "ingest": _BASE | {"model", "store"},
    "trail": _BASE | {"model", "store"},
    "access": _BASE | {"model", "store", "trail"},
    "credentials": _BASE | {"model", "delivery", "store", "crypto", "settings", "trail"},
    "pipeline": _BASE | {"model", "format", "delivery"},
    "destinations": _BASE
    | {"model", "format", "delivery", "store", "crypto", "egress", "settings", "trail"},
    "delivery_health": _BASE | {"model", "store"},
    "fleet_metrics": _BASE | {"model", "store"},
    "declared": _BASE
    | {"model", "format", "delivery", "store", "crypto", "egress", "settings", "trail"}
    | {"destinations"},
    "batch": _BASE | {"model", "format", "delivery", "store", "pipeline", "manifest", "trail"},
    "sources": _BASE | {"model", "delivery", "store", "ingest", "crypto", "egress", "settings"},
    "tenants": _BASE
    | {"model", "format", "delivery", "store", "pipeline", "batch", "manifest", "trail"},
    "runtime": _BASE
    | {
        "model",
        "format",
        "delivery",
        "store",
        "pipeline",
        "batch",
        "manifest",
        "destinations",
        "crypto",
        "egress",
        "settings",
        "credentials",
        "trail",
        "sources",
    },
    "api": _BASE
    | {
        "model",
        "format",
        "delivery",
        "store",
        "pipeline",
        "batch",
        "runtime",
        "manifest",
        "destinations",
        "ingest",
        "crypto",
        "egress",
        "settings",
        "credentials",
        "trail",
        "access",
        "tenants",
        "declared",
        "delivery_health",
        "fleet_metrics",
    },
}
ALLOWED["cli"] = ALLOWED["api"] | {"api", "sample", "sources"}
ALLOWED["__main__"] = frozenset({"cli"})
ALLOWED["__init__"] = frozenset({"model"})
# The package root holds `__version__` and re-exports the event: whatever may import the model
# may import the root.
for _part_name, _allowed in list(ALLOWED.items()):
    if "model" in _allowed:
        ALLOWED[_part_name] = _allowed | {"__init__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    """The xavyo_siem modules `path` imports, at any depth of its code."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            # `from xavyo_siem.store import events` imports the module `store.events`
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                if _source_of(candidate) is not None:
                    yield candidate


def _source_of(module: str) -> Path | None:
    if not module.startswith("xavyo_siem"):
        return None
    relative = Path(*module.split(".")[1:])
    for candidate in (ROOT / relative / "__init__.py", (ROOT / relative).with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@cache
def module_graph() -> dict[str, frozenset[str]]:
    """Each module of the package → the package's modules it imports."""
    graph: dict[str, frozenset[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        graph[_module_name(path)] = frozenset(
            target for target in _imports(path) if _source_of(target) is not None
        )
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One cycle of `graph` as a path, or None (depth-first search, colouring nodes)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target == node:
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_part_of_the_package_is_in_the_layering_table() -> None:
    """A new subpackage or top-level module gets a row before it gets code."""
    parts = {_part(module) for module in module_graph()}
    assert parts <= set(ALLOWED), sorted(parts - set(ALLOWED))


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_a_part_imports_only_what_is_below_it(part: str) -> None:
    """No module reaches up or sideways: each import goes to a part its row allows."""
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in module_graph().items()
        if _part(module) == part
        for target in targets
        if _part(target) != part and _part(target) not in ALLOWED[part]
    )
    assert wrong == []


def test_no_two_modules_import_each_other_in_a_circle() -> None:
    """The module graph has no cycle (a package importing its own `__init__` aside)."""
    graph = {
        module: frozenset(t for t in targets if not module.startswith(t + "."))
        for module, targets in module_graph().items()
    }
    assert _cycle(graph) is None


def test_no_two_parts_import_each_other_in_a_circle() -> None:
    """Between subpackages and top-level modules the imports form no cycle either."""
    parts: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        parts.setdefault(_part(module), set()).update(
            _part(target) for target in targets if _part(target) != _part(module)
        )
    assert _cycle({part: frozenset(t) for part, t in parts.items()}) is None


def test_the_pipeline_speaks_no_sql() -> None:
    """pipeline/ works over small protocols: it imports neither SQLAlchemy nor the store."""
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "sqlalchemy"]
    assert offenders == []

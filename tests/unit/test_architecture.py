"""The shape of the code: import directions, no cycles, pure state machines.

Every import counts — at module level, inside functions, and behind
``TYPE_CHECKING`` — so a cycle cannot hide behind a late import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("replicator", "canister_iface", "localnet")


def _modules(package: str) -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every module ``module`` imports.

    ``from a import b`` counts as ``a.b`` when that is a module (the parent
    package's ``__init__`` runs for every import of a submodule, so it is not an
    edge of its own), else as ``a``.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in known else base


def _graph(package: str) -> dict[str, set[str]]:
    known = {m: p for pkg in PACKAGES for m, p in _modules(pkg).items()}
    ours = _modules(package)
    names = set(known)
    return {m: {i for i in _imports(m, p, names) if i in known and i != m} for m, p in ours.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among ``graph``'s modules, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("package", ["replicator", "canister_iface"])
def test_no_import_cycles(package: str) -> None:
    cycle = _cycle(_graph(package))
    assert cycle is None, " → ".join(cycle or [])


def test_the_core_never_imports_the_command_line() -> None:
    for module, imports in _graph("replicator").items():
        if module.startswith("replicator.cli"):
            continue
        into_cli = sorted(i for i in imports if i.startswith("replicator.cli"))
        assert not into_cli, f"{module} imports {into_cli}"


def test_the_engine_imports_no_flow_and_the_layers_point_one_way() -> None:
    graph = _graph("replicator")
    assert not [i for i in graph["replicator.engine"] if i.startswith("replicator.flows")]
    for module, imports in _graph("canister_iface").items():
        assert not [i for i in imports if i.startswith(("replicator", "localnet"))], module
    for module, imports in _graph("localnet").items():
        assert not [i for i in imports if i.startswith(("replicator", "canister_iface"))], module


def test_no_type_checking_imports() -> None:
    for package in ("replicator", "canister_iface"):
        for module, path in _modules(package).items():
            assert "TYPE_CHECKING" not in path.read_text(), module


@pytest.mark.parametrize(
    "module",
    [
        "replicator.machine",
        "replicator.flows.image.machine",
        "replicator.flows.standby.machine",
        "replicator.flows.fleets.machine",
        "replicator.flows.fleets.timing",
        "replicator.flows.snapshot.machine",
        "replicator.chunkbook",
        "replicator.flows.split.machine",
        "replicator.flows.compact.machine",
    ],
)
def test_state_machines_import_nothing_that_does_io(module: str) -> None:
    probe = (
        f"import sys; import {module}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'httpx', 'httpcore', 'sqlite3', 'aiohttp', 'canister_iface', 'socket', 'wasmtime'}); "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "", f"{module} pulls in {out.stdout.strip()}"

"""The layers as drawn, read from the source: routes call services only (no chain, no SQL), only backend/chain
imports the chain libraries, nothing below the entry points imports them, and no backend module imports itself
through others (lazy imports inside functions count too: deferring an import hides a cycle from Python, not from
the design)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
CHAIN_LIBRARIES = {"web3", "eth_account", "eth_abi", "eth_utils", "eth_typing", "eth_keys", "hexbytes", "coincurve"}
CHAIN_LIBRARIES |= {"rlp", "solcx"}
SQL_LIBRARIES = {"sqlmodel", "sqlalchemy"}
# What a route leaves to services: the chain and the database that the context holds.
CONTEXT_INTERNALS = {
    "chain",
    "engine",
    "reader",
    "read",
    "write",
    "fetch",
    "pipeline",
    "keys",
    "follower",
    "writer",
    "reads",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(BACKEND.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def _imports(name: str, tree: ast.Module | None = None) -> list[tuple[int, str]]:
    """(line, module) of every import in `name`, at any depth (module level, functions, `if` blocks);
    `from pkg import mod` names the submodule when there is one, relative imports are resolved."""
    is_package = name in MODULES and MODULES[name].name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree or TREES[name]):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add((node.lineno, submodule if submodule in MODULES else base))
    return sorted(found)


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _graph() -> dict[str, set[str]]:
    return {name: {m for _, m in _imports(name) if m in MODULES and m != name} for name in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (its modules in import order, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, then "done"
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_checks_see_the_whole_backend_and_find_cycles() -> None:
    assert {"backend.api.app", "backend.chain.ledger", "backend.services.context"} <= set(MODULES)
    lazy = ast.parse("def f():\n    from backend.services import context\n    from ..chain import ledger\n")
    assert _imports("backend.api.x", lazy) == [(2, "backend.services.context"), (3, "backend.chain.ledger")]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_api_modules_never_import_the_chain_package() -> None:
    found = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if _in(name, "backend.api")
        for line, target in _imports(name)
        if _in(target, "backend.chain")
    ]
    assert found == [], "the API reaches the chain only through services:\n" + "\n".join(found)


def test_only_commands_import_the_commands_package() -> None:
    found = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if not _in(name, "backend.commands")
        for line, target in _imports(name)
        if _in(target, "backend.commands")
    ]
    assert found == [], "entry points sit above the service, never below it:\n" + "\n".join(found)


def test_routes_neither_run_sql_nor_reach_the_chain() -> None:
    routes = [name for name in MODULES if name == "backend.api.app" or _in(name, "backend.api.routes")]
    found = []
    for name in routes:
        found += [f"{name}:{line} imports {t}" for line, t in _imports(name) if t.split(".")[0] in SQL_LIBRARIES]
        found += [
            f"{name}:{node.lineno} uses ctx.{node.attr}"
            for node in ast.walk(TREES[name])
            if isinstance(node, ast.Attribute)
            and node.attr in CONTEXT_INTERNALS
            and (
                (isinstance(node.value, ast.Name) and node.value.id == "ctx")
                or (isinstance(node.value, ast.Attribute) and node.value.attr == "ctx")
            )
        ]
    assert found == [], "routes read the chain and the database through services:\n" + "\n".join(sorted(found))


def test_only_the_chain_package_imports_chain_libraries() -> None:
    found = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if not _in(name, "backend.chain")
        for line, target in _imports(name)
        if target.split(".")[0] in CHAIN_LIBRARIES
    ]
    assert found == [], "chain libraries belong in backend/chain:\n" + "\n".join(found)


def test_backend_import_graph_has_no_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])

"""Compiles the Solidity sources through py-solc-x (standard JSON) into ABI/bytecode artifacts.

Imports are resolved here, in Python, and every source goes to the compiler inline. That keeps the
native `solc` and the npm `solc` (through a small shim) on exactly the same input, so the same sources
always give the same bytecode, wherever the project lives on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from solcx import wrapper as solc_wrapper
from solcx.exceptions import SolcError

from backend.paths import BUILD_DIR, PROJECT_ROOT

# The one place the compiler and its settings are pinned.
SOLC_VERSION = "0.8.37"
COMPILER_SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 10_000},
    # Cancun: what anvil and Hyperledger Besu both run; later opcodes would tie us to one node.
    "evmVersion": "cancun",
    "metadata": {"bytecodeHash": "ipfs"},
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}},
}
SHIM = Path(__file__).with_name("solcjs_shim.cjs")
_IMPORT_RE = re.compile(r"""^\s*import\s+(?:[^;]*?\bfrom\s+)?["']([^"']+)["']""", re.MULTILINE)


class CompileError(Exception):
    """The compiler refused the sources; the message lists `file:line:col: message` for each error."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    metadata: str


def solc_binary() -> Path:
    """A native solc of the pinned version if one is installed, else the solcjs shim."""
    forced = os.environ.get("VOUCHER_SOLC")
    if forced:
        return Path(forced)
    native = shutil.which("solc")
    if native:
        try:
            if str(solc_wrapper.get_solc_version(native)) == SOLC_VERSION:
                return Path(native)
        except (SolcError, OSError, ValueError):
            pass  # an unusable native binary: fall back to the pinned solcjs
    return SHIM


def _source_path(unit: str, root: Path) -> Path:
    return root / "node_modules" / unit if unit.startswith("@") else root / unit


def collect_sources(entry_units: list[str], root: Path = PROJECT_ROOT) -> dict[str, dict[str, str]]:
    """Every source unit reachable from `entry_units`, keyed by unit name, content inline."""
    sources: dict[str, dict[str, str]] = {}
    pending = list(entry_units)
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        path = _source_path(unit, root)
        if not path.is_file():
            raise CompileError(f"{unit}: source not found at {path} (run `npm ci` for @-packages)")
        content = path.read_text(encoding="utf-8")
        sources[unit] = {"content": content}
        for target in _IMPORT_RE.findall(content):
            if target.startswith("."):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(unit), target))
            pending.append(target)
    return dict(sorted(sources.items()))


def standard_input(entry_units: list[str], root: Path = PROJECT_ROOT) -> dict[str, Any]:
    return {"language": "Solidity", "sources": collect_sources(entry_units, root), "settings": COMPILER_SETTINGS}


def _format_error(err: dict[str, Any], sources: dict[str, dict[str, str]]) -> str:
    loc = err.get("sourceLocation")
    where = "<compiler>"
    if loc and loc.get("file") in sources:
        # solc's offsets count UTF-8 bytes, not characters (our sources have CJK comments).
        data = sources[loc["file"]]["content"].encode("utf-8")[: max(loc.get("start", 0), 0)]
        line = data.count(b"\n") + 1
        col = len(data[data.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        where = f"{loc['file']}:{line}:{col}"
    return f"{where}: {err.get('type', 'Error')}: {err.get('message', '').strip()}"


def compile_input(input_json: dict[str, Any], binary: Path | None = None) -> dict[str, Artifact]:
    """Runs the compiler on a standard-JSON input; returns one artifact per contract with bytecode."""
    stdout, _stderr, _, _ = solc_wrapper.solc_wrapper(
        solc_binary=binary or solc_binary(), stdin=json.dumps(input_json), standard_json=True
    )
    output = json.loads(stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(_format_error(e, input_json["sources"]) for e in errors))
    artifacts: dict[str, Artifact] = {}
    for unit, contracts in output.get("contracts", {}).items():
        if not unit.startswith("contracts/") and not unit.startswith("tests/"):
            continue  # libraries are compiled into ours; their own artifacts are noise
        for name, c in contracts.items():
            artifacts[name] = Artifact(
                name=name,
                abi=c["abi"],
                bytecode="0x" + c["evm"]["bytecode"]["object"],
                deployed_bytecode="0x" + c["evm"]["deployedBytecode"]["object"],
                metadata=c["metadata"],
            )
    return artifacts


def project_units(root: Path = PROJECT_ROOT, folder: str = "contracts") -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / folder).rglob("*.sol"))


def build(root: Path = PROJECT_ROOT, out_dir: Path = BUILD_DIR, *, force: bool = False) -> dict[str, Artifact]:
    """Compiles contracts/ into `out_dir` unless the artifacts there already match these exact sources."""
    input_json = standard_input(project_units(root), root)
    fingerprint = hashlib.sha256((SOLC_VERSION + json.dumps(input_json, sort_keys=True)).encode()).hexdigest()
    stamp = out_dir / "fingerprint"
    if not force and stamp.is_file() and stamp.read_text() == fingerprint:
        return load_all(out_dir)
    artifacts = compile_input(input_json)
    out_dir.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts.values():
        (out_dir / f"{artifact.name}.json").write_text(json.dumps(artifact.__dict__, indent=1))
    stamp.write_text(fingerprint)
    return artifacts


def load_all(out_dir: Path = BUILD_DIR) -> dict[str, Artifact]:
    return {p.stem: Artifact(**json.loads(p.read_text())) for p in sorted(out_dir.glob("*.json"))}


def load(name: str, out_dir: Path = BUILD_DIR) -> Artifact:
    path = out_dir / f"{name}.json"
    if not path.is_file():
        build(out_dir=out_dir)
    return Artifact(**json.loads(path.read_text()))

"""The real compiler (py-solc-x driving the pinned solcjs through our shim) on the project and on generated sources."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from solcx import wrapper as solc_wrapper

from backend.chain import compiler
from backend.paths import PROJECT_ROOT

CONTRACT = "ComputeVoucher"


def _copy_project(root: Path) -> Path:
    """contracts/ copied under `root`, with node_modules linked to the project's (for the @-imports)."""
    shutil.copytree(PROJECT_ROOT / "contracts", root / "contracts")
    (root / "node_modules").symlink_to(PROJECT_ROOT / "node_modules")
    return root


Built = tuple[Path, Path, dict[str, compiler.Artifact]]  # a project root, its out dir, what was built there


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The project's sources at another path, built once into their own out dir."""
    base = tmp_path_factory.mktemp("elsewhere")
    root = _copy_project(base / "some" / "other" / "checkout")
    out = base / "out"
    return root, out, compiler.build(root=root, out_dir=out, force=True)


def test_the_same_sources_always_give_the_same_bytecode(tmp_path: Path, copied: Built) -> None:
    first = compiler.build(out_dir=tmp_path / "a", force=True)[CONTRACT]
    second = compiler.build(out_dir=tmp_path / "b", force=True)[CONTRACT]
    elsewhere = copied[2][CONTRACT]
    assert len(first.deployed_bytecode) > 1000
    for other in (second, elsewhere):
        assert other.bytecode == first.bytecode
        assert other.deployed_bytecode == first.deployed_bytecode
        assert other.metadata == first.metadata


def test_build_writes_artifacts_and_reuses_them_until_a_source_changes(tmp_path: Path, copied: Built) -> None:
    root, out, built = copied
    path = out / f"{CONTRACT}.json"
    saved = json.loads(path.read_text())
    assert {"abi", "bytecode", "deployed_bytecode", "metadata"} <= saved.keys()
    assert saved["bytecode"] == built[CONTRACT].bytecode and saved["abi"] == built[CONTRACT].abi
    assert json.loads(saved["metadata"])["compiler"]["version"].startswith(compiler.SOLC_VERSION)
    fingerprint = (out / "fingerprint").read_text()
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # No source changed: the artifacts on disk are returned, nothing is rewritten.
    assert compiler.build(root=root, out_dir=out) == built
    assert (out / "fingerprint").read_text() == fingerprint
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes

    # A changed source (a copy of the same build with one comment added) changes the fingerprint and recompiles.
    changed_root = _copy_project(tmp_path / "changed")
    changed_out = shutil.copytree(out, tmp_path / "changed_out")
    source = changed_root / "contracts" / f"{CONTRACT}.sol"
    source.write_text(source.read_text() + "\n// one more line\n")
    rebuilt = compiler.build(root=changed_root, out_dir=changed_out)
    assert (changed_out / "fingerprint").read_text() != fingerprint
    assert (changed_out / path.name).stat().st_mtime_ns != mtimes[path.name]
    # Same code, new metadata hash: the bytecode changes, the ABI does not.
    assert rebuilt[CONTRACT].abi == built[CONTRACT].abi
    assert rebuilt[CONTRACT].bytecode != built[CONTRACT].bytecode


BAD_TYPE = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

contract Bad {
    function f() external pure returns (uint256) {
        uint256 x = "not a number";
        return x;
    }
}
"""
BAD_SYNTAX = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

contract Bad {
    uint256 public x = 1
    uint256 public y = 2;
}
"""

# solc counts offsets in UTF-8 bytes: CJK text before the error must not shift the line or column.
BAD_AFTER_CJK = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;
/// 算力券：算力券算力券算力券算力券算力券算力券算力券算力券算力券
contract Bad {
    function f() external pure returns (uint256) {
        string memory s = unicode"算力"; s;
        string memory t = unicode"算力券"; uint256 x = t; return x;
    }
}
"""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (BAD_AFTER_CJK, "contracts/Bad.sol:7:41: TypeError: Type string memory is not implicitly convertible"),
        (BAD_TYPE, 'contracts/Bad.sol:6:9: TypeError: Type literal_string "not a number" is not implicitly'),
        (BAD_SYNTAX, "contracts/Bad.sol:6:5: ParserError: Expected ';' but got 'uint256'"),
    ],
    ids=["after-cjk", "type-error", "syntax-error"],
)
def test_a_compile_error_reaches_the_user_as_file_line_col_type_message(
    tmp_path: Path, source: str, expected: str
) -> None:
    # `voucher build` always compiles the project root, so the tmp root goes through compiler.build directly.
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "Bad.sol").write_text(source)
    with pytest.raises(compiler.CompileError) as exc:
        compiler.build(root=tmp_path, out_dir=tmp_path / "out")
    message = str(exc.value)
    assert message.startswith(expected), message
    assert len(message.splitlines()) == 1
    assert "Traceback" not in message and "SolcError" not in message and "{" not in message
    assert not (tmp_path / "out" / "fingerprint").exists()


def test_a_missing_import_names_the_unit_and_where_it_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "A.sol").write_text('import {B} from "./lib/B.sol";\ncontract A {}\n')
    with pytest.raises(
        compiler.CompileError, match=r"contracts/lib/B\.sol: source not found at .*contracts/lib/B\.sol"
    ):
        compiler.build(root=tmp_path, out_dir=tmp_path / "out")


def test_the_shim_answers_version_with_the_pinned_compiler() -> None:
    assert str(solc_wrapper.get_solc_version(compiler.SHIM)) == compiler.SOLC_VERSION
    out = subprocess.run([str(compiler.SHIM), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"Version: {compiler.SOLC_VERSION}+" in out


def test_large_shim_outputs_are_not_truncated() -> None:
    # Hundreds of functions: their ABI appears twice (abi and metadata), well past the old 128 KiB cut.
    n = 400
    body = "\n".join(
        f"    function f{i}(uint256 a, address b) external pure returns (uint256) {{ return a + {i}; }}"
        for i in range(n)
    )
    source = f"// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\ncontract Big {{\n{body}\n}}\n"
    input_json = {
        "language": "Solidity",
        "sources": {"contracts/Big.sol": {"content": source}},
        "settings": {"outputSelection": {"*": {"*": ["abi", "metadata"]}}},
    }
    stdout, _, _, _ = solc_wrapper.solc_wrapper(
        solc_binary=compiler.SHIM, stdin=json.dumps(input_json), standard_json=True
    )
    assert len(stdout.encode()) > 131072
    output = json.loads(stdout)  # a cut output would not parse
    assert not [e for e in output.get("errors", []) if e["severity"] == "error"]
    big = output["contracts"]["contracts/Big.sol"]["Big"]
    assert len(big["abi"]) == n
    assert len(json.loads(big["metadata"])["output"]["abi"]) == n


@pytest.mark.parametrize("args", [[], ["--bin", "contracts/ComputeVoucher.sol"], ["--combined-json", "abi"]])
def test_the_shim_refuses_unsupported_arguments(args: list[str]) -> None:
    done = subprocess.run([str(compiler.SHIM), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "unsupported arguments" in done.stderr and "--standard-json" in done.stderr
    assert done.stdout == ""

"""What ships with the package: the README's command table matches the real command line, `voucher --version`
names the installed version, and the two hashed locks agree with each other and with pyproject.toml."""

from __future__ import annotations

import argparse
import itertools
import json
import re
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from backend import DISTRIBUTION
from backend.commands.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][A-Za-z0-9-]*")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})*)", re.M)


def _parser_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], set[str]]]:
    """Every command the parser runs (and the bare `voucher` for its own flags), with its flags."""
    flags = {s for action in parser._actions for s in action.option_strings} - {"-h", "--help"}
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if flags or not groups:
        yield path, flags
    for group in groups:
        for name, child in group.choices.items():
            yield from _parser_commands(child, (*path, name))


def _shown(path: tuple[str, ...]) -> str:
    return " ".join(("voucher", *path))


def _readme_commands() -> dict[tuple[str, ...], set[str]]:
    """The table under "## The `voucher` command": command words of each row, and the flags it names."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## The `voucher` command\n", 1)[1]
    lines = section.lstrip("\n").splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if not line.startswith("|"))]
    rows: dict[tuple[str, ...], set[str]] = {}
    for line in table[2:]:  # after the header and the |---| line
        usage = re.split(r"(?<!\\)\|", line)[1].strip().strip("`")
        words = usage.split()
        assert words[0] == "voucher", line
        path = tuple(itertools.takewhile(lambda word: word[0] not in "-[", words[1:]))
        assert path not in rows, f"two rows for `{_shown(path)}`"
        rows[path] = set(FLAG.findall(usage))
    return rows


def test_readme_command_table_lists_every_command_and_flag_of_the_cli() -> None:
    readme = _readme_commands()
    cli = dict(_parser_commands(build_parser()))
    assert set(map(_shown, readme)) == set(map(_shown, cli)), "README rows (left) and CLI commands (right) differ"
    for path, flags in cli.items():
        assert flags <= readme[path], f"`{_shown(path)}`: the README misses {sorted(flags - readme[path])}"
        assert readme[path] <= flags, f"`{_shown(path)}`: the CLI has no {sorted(readme[path] - flags)}"


def test_version_flag_prints_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"voucher {metadata.version(DISTRIBUTION)}\n"


def test_the_voucher_script_runs_the_command_line_of_the_commands_package() -> None:
    script = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]["voucher"]
    assert script == "backend.commands.cli:main"
    installed = metadata.entry_points(group="console_scripts", name="voucher")
    assert [ep.value for ep in installed] == [script], "reinstall the package: `make build`"
    assert next(iter(installed)).load() is main


def test_python_and_npm_packages_are_licensed_apache_2() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION
    assert project["license"] == "Apache-2.0"
    assert json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["license"] == "Apache-2.0"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").split()[:4] == ["Apache", "License", "Version", "2.0,"]


def _lock(name: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Package name (normalised) -> (pinned version, its sha256 hashes)."""
    text = (ROOT / name).read_text(encoding="utf-8")
    pins = {
        re.sub(r"[-_.]+", "-", m[1]).lower(): (m[2], frozenset(re.findall(r"sha256:(\w+)", m[3])))
        for m in PIN.finditer(text)
    }
    assert len(pins) == len(re.findall(r"^\S+==", text, re.M)), f"{name}: a pin without the expected form"
    return pins


def test_locks_hash_every_package_and_share_versions_with_pyproject() -> None:
    runtime, dev = _lock("requirements.lock"), _lock("requirements-dev.lock")
    for name, (version, hashes) in (runtime | dev).items():
        assert hashes, f"{name}=={version} has no hash"
    for name in runtime.keys() & dev.keys():
        assert dev[name] == runtime[name], f"{name}: the dev lock pins another version or other files"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for lock, declared in ((runtime, project["dependencies"]), (dev, project["optional-dependencies"]["dev"])):
        for requirement in declared:
            name, version = re.sub(r"\[.*\]", "", requirement).split("==")
            assert lock[re.sub(r"[-_.]+", "-", name).lower()][0] == version, requirement

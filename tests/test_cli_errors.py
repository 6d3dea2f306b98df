"""Bad input: one clear line on stderr, exit status 125, nothing created, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import storage_entries

from pydock.testing.cli import PYDOCK, Pydock

BAD_RUNS = [
    (["--bogus"], "unknown option '--bogus'"),
    (["--network", "mynet"], "unknown network 'mynet': expected one of bridge, host, none"),
    (["-w", "relative/dir"], "must be an absolute path"),
    (["-e", "=value"], "invalid environment variable"),
    (["-e", ""], "invalid environment variable"),
    (["--hostname", "bad host"], "invalid hostname"),
    (["--hostname", "h" * 65], "invalid hostname"),
    (["--hostname", ""], "invalid hostname"),
    (["--storage", ""], "unknown storage driver"),
    (["--storage", "nope"], "unknown storage driver 'nope'"),
    (["--image", "nope"], "no such image: nope:latest"),
    (["--image", "NOT/valid"], "invalid image reference"),
]


@pytest.mark.parametrize(("args", "message"), BAD_RUNS)
def test_bad_run_options_are_one_line_125_and_create_nothing(pydock: Pydock, args: list[str],
                                                             message: str) -> None:
    pydock.refused("run", *args, "true", match=message)
    assert pydock.container_names() == []
    assert storage_entries(pydock.root) == []


@pytest.mark.quick
@pytest.mark.parametrize(("args", "message"), [
    (["nonsense"], "No such command 'nonsense'"),
    (["rm"], "Missing argument"),
    (["run", "--name"], "requires an argument"),
    (["rm", "ghost"], "no such container: ghost"),
    (["image", "rm", "ghost"], "no such image: ghost:latest"),
    (["image", "import", "/nonexistent.tar", "x"], "/nonexistent.tar"),
    (["storage", "info", "nope"], "unknown storage driver 'nope'"),
    (["ps", "--format", "yaml"], "'yaml' is not one of"),
])
def test_bad_commands_are_one_line_125(pydock: Pydock, args: list[str], message: str) -> None:
    pydock.refused(*args, match=message)


def test_an_empty_root_is_refused(pydock: Pydock) -> None:
    pydock.refused("--root", "", "ps", match="--root must not be empty")


@pytest.mark.needs_root
def test_a_relative_root_is_made_absolute(tmp_path: Path) -> None:
    result = subprocess.run([PYDOCK, "--root", "rel", "run", "--rm", "true"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "rel" / "layers").is_dir()


def test_help_and_version_exit_0(pydock: Pydock) -> None:
    assert "Run COMMAND in a new container" in pydock.ok("run", "--help")
    assert pydock.ok("--version").startswith("pydock, version ")

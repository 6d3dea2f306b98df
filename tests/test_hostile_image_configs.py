"""Hostile image configs: absurd Env, Cmd, Entrypoint, WorkingDir and User values, and
documents of the wrong shape, either refused by ``image load`` in one line or run as
docker runs them.

As in every test_hostile_* file: bad input gets one line on stderr and exit status 125, or
works as in docker; never a traceback. A refused command leaves the storage root as it
found it: helpers.refused_unchanged compares a full listing of it (paths, types, modes,
owners, sizes, contents) before and after. The root is a copy of conftest's primed_root,
which has run one container on every driver, so the store's own directories do not count
as a change; conftest checks after every test that no mount and no container cgroup
survives. The bad-input tests of test_cli_errors, test_state, test_users, test_volumes,
test_cgroups, the test_archive_* files and test_image_transfer are not repeated here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Layer,
    docker_archive,
    make_config,
    refused_unchanged,
)

from pydock.testing.cli import Pydock
from pydock.testing.manifest import diff_manifests, manifest

# conftest's pydock fixture, on a copy of its primed root.
pytestmark = pytest.mark.primed


@dataclass(frozen=True)
class AtLoad:
    """``image load`` refuses the archive with this message."""

    message: str


@dataclass(frozen=True)
class AtRun:
    """The image loads; ``run --rm`` of it exits ``code``, with this stdout, or with an
    error line holding ``error``."""

    code: int
    stdout: str = ""
    error: str = ""


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


HUGE = "v" * 100_000
CONFIGS: dict[str, tuple[dict[str, Any], AtLoad | AtRun]] = {
    "env-not-strings": ({"Env": ["A=1", 1, None]}, AtLoad("config.Env: expected a list of")),
    "env-a-string": ({"Env": "A=1"}, AtLoad("config.Env: expected a list of strings")),
    "env-with-a-nul": ({"Env": ["A=b\0c"]}, AtLoad("config.Env: contains a NUL byte")),
    # Entries without "=" or a key name nothing: docker passes them on, pydock drops them.
    "env-without-equals": ({"Env": ["LONELY", "=x", "A=1"],
                            "Cmd": sh("echo $A; env | grep -e LONELY -e ^= || echo none")},
                           AtRun(0, "1\nnone\n")),
    "env-100k-value": ({"Env": [f"BIG={HUGE}"], "Cmd": sh("echo ${#BIG}")}, AtRun(0, "100000\n")),
    # More than the kernel takes in one string (32 pages): refused by execve, as in docker.
    "env-200k-value": ({"Env": [f"BIG={HUGE * 2}"], "Cmd": ["true"]},
                       AtRun(125, error='exec "true": Argument list too long')),
    # Docker's StrSlice: one string is a list of one, not a shell command line.
    "cmd-a-string": ({"Cmd": "echo hi"},
                     AtRun(127, error='exec: "echo hi": executable file not found in $PATH')),
    "cmd-an-object": ({"Cmd": {"echo": "hi"}}, AtLoad("config.Cmd: expected a string or a")),
    "cmd-not-strings": ({"Cmd": ["echo", 1]}, AtLoad("config.Cmd: expected a string or a")),
    "cmd-with-a-nul": ({"Cmd": ["echo", "a\0b"]}, AtLoad("config.Cmd: contains a NUL byte")),
    "entrypoint-null": ({"Entrypoint": None, "Cmd": ["echo", "ok"]}, AtRun(0, "ok\n")),
    "entrypoint-empty-string": ({"Entrypoint": "", "Cmd": ["echo", "ok"]}, AtRun(0, "ok\n")),
    # Docker's reset: [""] is how `--entrypoint ""` clears an entrypoint.
    "entrypoint-list-of-empty": ({"Entrypoint": [""], "Cmd": ["echo", "ok"]}, AtRun(0, "ok\n")),
    "entrypoint-a-string": ({"Entrypoint": "echo", "Cmd": ["ok"]}, AtRun(0, "ok\n")),
    "entrypoint-a-number": ({"Entrypoint": 5}, AtLoad("config.Entrypoint: expected a string")),
    "workdir-relative": ({"WorkingDir": "rel", "Cmd": ["true"]},
                         AtRun(125, error="working directory 'rel' must be an absolute path")),
    "workdir-climbing": ({"WorkingDir": "/a/../../b", "Cmd": sh("pwd; test -e /a || echo none")},
                         AtRun(0, "/b\nnone\n")),
    "workdir-with-a-nul": ({"WorkingDir": "/a\0b"}, AtLoad("config.WorkingDir: contains a NUL")),
    "workdir-a-number": ({"WorkingDir": 7}, AtLoad("config.WorkingDir: expected a string")),
    "user-junk": ({"User": "a b:c:d", "Cmd": ["true"]}, AtRun(125, error="invalid user 'a b")),
    "user-a-number": ({"User": 5}, AtLoad("config.User: expected a string")),
    "user-unknown": ({"User": "ghost", "Cmd": ["true"]},
                     AtRun(125, error="unable to find user ghost")),
    "no-command-at-all": ({}, AtRun(125, error="no command given and the image has no")),
}
DOCUMENTS: dict[str, tuple[dict[str, Any], AtLoad | AtRun]] = {
    "config-a-list": ({"config": ["Cmd"]}, AtLoad("config: expected a JSON object")),
    "config-a-string": ({"config": "Cmd"}, AtLoad("config: expected a JSON object")),
    "config-null": ({"config": None}, AtRun(125, error="no command given")),
    "config-10-mb": ({"config": {"Cmd": ["true"], "Labels": {"x": "y" * (10 << 20)}}},
                     AtLoad("bytes is too large for an image document")),
    "created-a-number": ({"created": 1700000000}, AtLoad("created: expected a JSON string")),
    "created-not-a-date": ({"created": "yesterday", "config": {"Cmd": ["echo", "ok"]}},
                           AtRun(0, "ok\n")),
}
CASES = {**{name: ({"config": run_config}, outcome)
            for name, (run_config, outcome) in CONFIGS.items()}, **DOCUMENTS}


@pytest.mark.parametrize(("document", "outcome"), CASES.values(), ids=CASES.keys())
def test_absurd_image_configs_work_as_in_docker_or_fail_in_one_line(
        pydock: Pydock, tmp_path: Path, layers: list[Layer], document: dict[str, Any],
        outcome: AtLoad | AtRun) -> None:
    config = json.loads(make_config(layers))
    config.update(document)
    archive, blob = tmp_path / "image.tar", json.dumps(config).encode()
    docker_archive(archive, layers, ["absurd:1"], config=blob)
    if isinstance(outcome, AtLoad):
        refused_unchanged(pydock, ["image", "load", "-i", str(archive)], outcome.message)
        return
    pydock.ok("image", "load", "-i", str(archive))
    before = manifest(pydock.root)
    if outcome.error:
        pydock.refused("run", "--rm", "--image", "absurd:1", code=outcome.code,
                       match=outcome.error)
    else:
        result = pydock("run", "--rm", "--image", "absurd:1")
        assert (result.returncode, result.stdout) == (outcome.code, outcome.stdout), result
        assert "Traceback" not in result.stderr
    assert diff_manifests(before, manifest(pydock.root)) == []
    # image ls reads the config too; and it is kept as it came, odd values and all.
    pydock.ok("image", "ls")
    image = json.loads(pydock.ok("image", "inspect", "absurd:1"))
    assert image["Id"] == f"sha256:{hashlib.sha256(blob).hexdigest()}"

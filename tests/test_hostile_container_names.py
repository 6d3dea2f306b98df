"""Hostile container names: every command refuses them as no such container, and a name
that is a path never reaches a container record planted outside the store.

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

import json
from pathlib import Path

import pytest
from helpers import refused_unchanged

from pydock.core.containers import spec
from pydock.core.containers.spec import RunOptions
from pydock.testing.cli import Pydock
from pydock.testing.manifest import manifest

# conftest's pydock fixture, on a copy of its primed root.
pytestmark = pytest.mark.primed


# test_state covers `run --name` with names outside docker's rule; these go further.
NAMES = {
    "empty": "",
    "unicode": "ünïcode",
    "control": "a\x01b",
    "escape": "a\x1b[31mb",
    "newline": "new\nline",
    "300-characters": "x" * 300,
    "leading-dash": "-leading",
    "leading-dot": ".dot",
    "slash": "a/b",
    "dot-dot": "..",
    "climbing": "../images",
    "absolute": "/etc",
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_a_bad_single_dash_name_is_refused(pydock: Pydock, name: str) -> None:
    refusal = refused_unchanged(pydock, ["run", "-name", name, "true"], "invalid container name")
    assert repr(name) in refusal or "300 characters" in refusal


# "--" ends the options, so that a name with a leading dash reaches the command.
COMMANDS = {
    "exec": ["exec", "--", "NAME", "true"],
    "kill": ["kill", "--", "NAME"],
    "stop": ["stop", "-t", "0", "--", "NAME"],
    "logs": ["logs", "--", "NAME"],
    "rm": ["rm", "-f", "--", "NAME"],
    "inspect": ["inspect", "--", "NAME"],
    "diff": ["diff", "--", "NAME"],
    "commit": ["commit", "--", "NAME", "committed"],
    "export": ["export", "-o", "OUT", "--", "NAME"],
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_a_bad_name_is_no_such_container_for_every_command(pydock: Pydock, tmp_path: Path,
                                                          name: str) -> None:
    out = tmp_path / "exported.tar"
    for command in COMMANDS.values():
        args = [name if arg == "NAME" else str(out) if arg == "OUT" else arg for arg in command]
        # Quoted: the name is shown as typed, never as raw control characters.
        refused_unchanged(pydock, args, f"no such container: {name!r} is not a valid container "
                       "name")
    assert not out.exists()


def test_a_name_that_is_a_path_never_reaches_a_record_outside_the_store(
        pydock: Pydock, tmp_path: Path) -> None:
    # A record planted outside the store, whose id leads its driver's remove to yet another
    # directory. Taken for a container, rm would delete both.
    planted, victim = tmp_path / "planted", tmp_path / "victim"
    for directory in (planted, victim):
        directory.mkdir()
        (directory / "keep").write_text("keep\n")
    (planted / "lock").touch()
    record = {"id": f"../../../../../../../..{victim}", "name": "planted", "driver": "copy",
              "image": "x", "image_id": "sha256:" + "0" * 64, "layers": [],
              "spec": spec.build(RunOptions(command=("true",)), {}, "planted", str(planted))}
    (planted / "state.json").write_text(json.dumps(record))
    before = manifest(planted), manifest(victim)
    for name in (str(planted), f"../../{planted.name}"):
        for args in (["rm", "-f", name], ["inspect", name], ["logs", name]):
            refused_unchanged(pydock, args, "is not a valid container name")
    assert (manifest(planted), manifest(victim)) == before

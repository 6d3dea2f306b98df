"""What a docker user types without thinking: ids and id prefixes, ``run -d`` printing the
id, ``ps -q/-n/--filter``, stdin only with ``-i``, and errors that point the way.

Each runs on the default image and on a layered one (three layers, make_layers')."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import Layer, load_layered

from pydock.testing.cli import Pydock

IMAGES = ["default", "layered"]


@pytest.fixture(params=IMAGES)
def image(request: pytest.FixtureRequest, pydock: Pydock, tmp_path: Path,
          layers: list[Layer]) -> tuple[str, ...]:
    """``--image`` options for the default image or a layered one."""
    if request.param == "default":
        return ()
    return ("--image", load_layered(pydock, tmp_path, layers, "layered:1"))


def test_run_detached_prints_the_full_id_and_any_unique_prefix_names_it(
        pydock: Pydock, image: tuple[str, ...]) -> None:
    container_id = pydock.ok("run", "-d", "--name", "bg", *image, "sleep", "60").strip()
    assert re.fullmatch("[0-9a-f]{64}", container_id)
    assert pydock.inspect(container_id[:5])["Name"] == "bg"
    assert pydock.inspect(container_id)["Name"] == "bg"
    assert pydock.ok("ps", "-q") == container_id[:12] + "\n"
    assert pydock.ok("exec", container_id[:12], "hostname") == "bg\n"
    assert pydock.ok("stop", "-t", "1", container_id[:8]) == container_id[:8] + "\n"
    assert pydock.ok("rm", container_id) == container_id + "\n"
    assert pydock.container_names() == []


def test_a_name_wins_over_an_id_prefix_and_a_shared_prefix_is_refused(pydock: Pydock) -> None:
    first = pydock.ok("run", "-d", "--name", "first", "true").strip()
    # A container whose name is a prefix of the other's id: the name wins, as in docker.
    pydock.ok("run", "--name", first[:6], "true")
    assert pydock.inspect(first[:6])["Name"] == first[:6]
    assert pydock.inspect(first[:7])["Name"] == "first"
    # A second record whose id shares the first's prefix (records are plain files).
    twin = pydock.root / "containers" / "twin"
    shutil.copytree(pydock.root / "containers" / "first", twin)
    state = json.loads((twin / "state.json").read_text())
    state["id"] = first[:7] + ("f" if first[7] != "f" else "0") * 57
    state["name"] = "twin"
    (twin / "state.json").write_text(json.dumps(state))
    for command in (["inspect"], ["rm", "-f"], ["logs"], ["stop"], ["exec"]):
        message = pydock.refused(*command, first[:7], *(["true"] if command == ["exec"] else []))
        assert message.startswith(f"id prefix '{first[:7]}' is ambiguous"), message
        assert "first, twin" in message
    assert pydock.inspect(first[:8])["Name"] == "first"
    assert pydock.inspect(state["id"][:8])["Name"] == "twin"
    shutil.rmtree(twin)
    assert pydock.inspect(first[:7])["Name"] == "first"


@pytest.mark.parametrize("reference", ["nosuch", "0" * 65, "../first", "/etc", "", "ABC"])
def test_a_reference_to_no_container_is_one_line(pydock: Pydock, reference: str) -> None:
    pydock.ok("run", "--name", "first", "true")
    for command in (["inspect"], ["rm", "-f"], ["logs"], ["stop"], ["kill"], ["diff"]):
        pydock.refused(*command, reference, match="no such container")


def test_ps_lists_newest_first_filters_and_escapes_commands(pydock: Pydock,
                                                             image: tuple[str, ...]) -> None:
    ids = [pydock.ok("run", "-d", "--name", name, *image, "sh", "-c", script).strip()
           for name, script in (("one", "true"), ("two", "printf 'a\\nb'; sleep 60"),
                                ("three", "exit 3"))]
    assert pydock.ok("wait", "one", ids[2][:6]) == "0\n3\n"
    listing = pydock.ok("ps", "-a").splitlines()
    assert [line.split()[-1] for line in listing[1:]] == ["three", "two", "one"]
    assert "\"sh -c printf 'a\\\\nb'; sleep 60\"" in listing[2]
    assert pydock.ok("ps", "-q") == ids[1][:12] + "\n"
    assert pydock.ok("ps", "-aq").split() == [i[:12] for i in reversed(ids)]
    assert pydock.ok("ps", "-n", "2", "-q").split() == [ids[2][:12], ids[1][:12]]
    assert pydock.ok("ps", "-l", "-q", "--no-trunc").split() == [ids[2]]
    assert pydock.ok("ps", "-q", "--filter", "status=exited").split() == [
        ids[2][:12], ids[0][:12]]
    assert pydock.ok("ps", "-aq", "-f", "name=o").split() == [ids[1][:12], ids[0][:12]]
    assert pydock.ok("ps", "-aq", "-f", "name=o", "-f", "status=running").split() == [
        ids[1][:12]]
    assert pydock.ok("ps", "-aq", "-f", f"id={ids[0][:4]}").split() == [ids[0][:12]]
    pydock.ok("rm", "-f", "two")


@pytest.mark.quick
@pytest.mark.parametrize("bad", ["name", "colour=red", "status=asleep", "=x"])
def test_ps_refuses_an_unknown_filter(pydock: Pydock, bad: str) -> None:
    pydock.refused("ps", "--filter", bad, match="invalid filter")


def test_stdin_is_connected_only_with_i(pydock: Pydock, image: tuple[str, ...]) -> None:
    script = ("cat; echo end",)
    assert pydock.ok("run", "--rm", *image, "sh", "-c", *script, input="typed\n") == "end\n"
    assert pydock.ok("run", "--rm", "-i", *image, "sh", "-c", *script,
                     input="typed\n") == "typed\nend\n"
    pydock.ok("run", "-d", "--name", "box", *image, "sleep", "60")
    assert pydock.ok("exec", "box", "sh", "-c", *script, input="typed\n") == "end\n"
    assert pydock.ok("exec", "-i", "box", "sh", "-c", *script, input="typed\n") == "typed\nend\n"
    pydock.ok("rm", "-f", "box")


def test_an_image_given_as_the_command_is_pointed_at_image(pydock: Pydock, tmp_path: Path,
                                                            layers: list[Layer]) -> None:
    load_layered(pydock, tmp_path, layers, "debian:bookworm")
    result = pydock("run", "--rm", "debian:bookworm", "cat", "/etc/os-release")
    assert result.returncode == 127, result
    assert result.stderr.count("\n") == 1
    assert "did you mean --image debian:bookworm?" in result.stderr
    # A command that is not an image keeps docker's plain message.
    result = pydock("run", "--rm", "no-such-command")
    assert result.returncode == 127 and "did you mean" not in result.stderr


@pytest.mark.quick
def test_a_relative_volume_source_must_be_absolute(pydock: Pydock) -> None:
    pydock.refused("run", "--rm", "-v", "./dir:/x", "true", match="host paths must be absolute")


@pytest.mark.quick
def test_storage_ls_says_yes_or_no(pydock: Pydock) -> None:
    rows = [line.split() for line in pydock.ok("storage", "ls").splitlines()[1:]]
    assert {row[0]: row[2] for row in rows if row[0] == "overlay"} == {"overlay": "yes"}
    assert all(row[2] in ("yes", "no") for row in rows)


@pytest.mark.quick
def test_an_unknown_run_option_is_refused_unless_an_entrypoint_takes_it(pydock: Pydock) -> None:
    pydock.refused("run", "--rm", "--nmae", "x", "true", match="unknown option '--nmae'")
    pydock.refused("run", "--rm", "-c", "echo", match="unknown option '-c'")
    assert pydock.container_names() == []
    assert pydock.ok("run", "--rm", "--entrypoint", "sh", "-c", "echo taken") == "taken\n"

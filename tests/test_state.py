"""Container records through the CLI: names, ps, inspect, rm, prune."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
from helpers import DRIVERS, storage_entries, write_legacy_record

from pydock.core.containers.state import validate_name
from pydock.core.errors import PydockError
from pydock.testing.cli import Pydock


def test_a_record_from_before_the_container_spec_still_loads(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "old", "-e", "A=1", "-w", "/tmp", "sleep", "60")
    write_legacy_record(pydock.root / "containers" / "old" / "state.json")
    info = pydock.inspect("old")
    assert info["State"]["Status"] == "running"
    assert (info["Config"]["Cmd"], info["Config"]["WorkingDir"]) == (["sleep", "60"], "/tmp")
    assert "A=1" in info["Config"]["Env"]
    assert pydock.ok("exec", "old", "sh", "-c", "echo $A $PWD") == "1 /tmp\n"
    pydock.ok("rm", "-f", "old")
    assert pydock.container_names() == []


@pytest.mark.parametrize("flag", ["-name", "--name"])
def test_single_and_double_dash_name_both_work(pydock: Pydock, flag: str) -> None:
    pydock.ok("run", flag, "named", "true")
    assert pydock.container_names() == ["named"]


def test_a_name_is_generated_when_none_is_given(pydock: Pydock) -> None:
    pydock.ok("run", "true")
    pydock.ok("run", "true")
    names = pydock.container_names()
    assert len(set(names)) == 2
    assert all(re.fullmatch(r"[a-z]+_[a-z]+", name) for name in names)


BAD_NAMES = ["", "-leading-dash", ".dot", "_under", "has space", "slash/name", "ünïcode",
             "tab\tname", "new\nline", "x" * 65, "x" * 300, "semi;colon", "..", "a:b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_an_invalid_name_exits_125_having_created_nothing(pydock: Pydock, name: str) -> None:
    pydock.refused("run", "--name", name, "true", match="invalid container name")
    assert pydock.container_names() == []
    assert storage_entries(pydock.root) == []


def test_the_longest_valid_name_works(pydock: Pydock) -> None:
    name = "a" * 64
    assert pydock.ok("run", "--rm", "--name", name, "hostname") == f"{name}\n"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_duplicate_name_exits_125_and_leaves_the_original_alone(pydock: Pydock,
                                                                  driver: str) -> None:
    pydock.ok("run", "--storage", driver, "--name", "twin", "sh", "-c", "echo 1 > /mark")
    original = pydock.inspect("twin")
    pydock.refused("run", "--storage", driver, "--name", "twin", "true", match="already in use")
    assert pydock.inspect("twin") == original
    assert len(storage_entries(pydock.root)) == 1


@pytest.mark.quick
def test_validate_name_accepts_docker_names() -> None:
    for name in ("a", "A1", "web_1", "my.container-2", "0"):
        validate_name(name)
    with pytest.raises(PydockError):
        validate_name("-x")


def test_ps_shows_running_containers_and_ps_a_all(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "done", "true")
    proc = pydock.popen("run", "--name", "live", "sleep", "60")
    try:
        info = pydock.wait_running("live")
        running = json.loads(pydock.ok("ps", "--format", "json"))
        assert [row["Names"] for row in running] == ["live"]
        assert running[0]["State"] == "running"
        assert running[0]["Storage"] == "overlay"
        everything = {row["Names"]: row for row in
                      json.loads(pydock.ok("ps", "-a", "--format", "json"))}
        assert everything["done"]["Status"].startswith("Exited (0)")
        table = pydock.ok("ps").splitlines()
        assert table[0].split() == ["ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "STORAGE",
                                    "NAMES"]
        assert "live" in table[1] and len(table) == 2
        assert info["State"]["Pid"] > 1
    finally:
        pydock.ok("rm", "-f", "live")
        proc.communicate(timeout=30)


def test_inspect_has_dockers_keys(pydock: Pydock) -> None:
    result = pydock("run", "--storage", "copy", "--name", "insp", "sh", "-c", "exit 4")
    assert result.returncode == 4
    info = pydock.inspect("insp")
    assert info["Name"] == "insp"
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 4
    assert info["State"]["Pid"] == 0
    assert info["GraphDriver"]["Name"] == "copy"
    assert Path(info["GraphDriver"]["Data"]["RootDir"]).is_dir()
    assert info["Config"]["Image"] == "pydock/default:latest"
    assert info["Config"]["Cmd"] == ["sh", "-c", "exit 4"]
    assert re.fullmatch(r"[0-9a-f]{64}", info["Id"])


def test_inspect_of_an_unknown_container_is_one_line_125(pydock: Pydock) -> None:
    assert pydock.refused("inspect", "nobody") == "no such container: nobody"


def test_rm_refuses_a_running_container_and_rm_f_kills_it(pydock: Pydock) -> None:
    proc = pydock.popen("run", "--name", "busy", "sleep", "60")
    try:
        pid = pydock.wait_running("busy")["State"]["Pid"]
        pydock.refused("rm", "busy", match="is running")
        pydock.ok("rm", "-f", "busy")
        assert proc.wait(timeout=30) == 137
        assert not Path(f"/proc/{pid}").exists()
        assert pydock.container_names() == []
        assert storage_entries(pydock.root) == []
    finally:
        proc.kill()
        proc.communicate()


def test_rm_of_several_names_reports_each_failure(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "one", "true")
    result = pydock("rm", "one", "ghost")
    assert result.returncode == 125
    assert result.stdout == "one\n"
    assert result.stderr == "pydock: no such container: ghost\n"


def test_prune_removes_stopped_containers_only(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "stopped", "true")
    proc = pydock.popen("run", "--name", "alive", "sleep", "60")
    try:
        pydock.wait_running("alive")
        assert pydock.ok("prune") == "stopped\n"
        assert pydock.container_names() == ["alive"]
    finally:
        pydock.ok("rm", "-f", "alive")
        proc.communicate(timeout=30)


def test_a_corrupt_record_is_reported_not_trusted(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "broken", "true")
    (pydock.root / "containers" / "broken" / "state.json").write_text("{not json")
    pydock.refused("inspect", "broken", match="corrupt record")


def test_state_record_is_written_atomically_without_temp_files(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "tidy", "true")
    assert sorted(p.name for p in (pydock.root / "containers" / "tidy").iterdir()) == \
        ["container.log", "hostname", "hosts", "lock", "resolv.conf", "state.json"]
    assert [p.name for p in (pydock.root / "containers").iterdir()] == ["tidy"]


def test_records_survive_in_json_with_all_fields(pydock: Pydock) -> None:
    result = pydock("run", "--name", "fields", "--storage", "bind", "sh", "-c", "exit 2")
    assert result.returncode == 2
    record = json.loads((pydock.root / "containers" / "fields" / "state.json").read_text())
    assert {"name", "driver", "image", "spec", "status", "pid", "exit_code", "created",
            "finished"} <= record.keys()
    assert (record["driver"], record["status"], record["exit_code"]) == ("bind", "exited", 2)
    assert record["spec"]["process"]["args"] == ["sh", "-c", "exit 2"]


def test_rm_f_works_while_the_cli_that_would_reap_the_container_is_stopped(
        pydock: Pydock) -> None:
    # The killed container stays a zombie until its stopped parent reaps it; a zombie has
    # the same pid and start time, but it is not running.
    proc = pydock.popen("run", "--name", "frozen", "sleep", "60")
    try:
        pydock.wait_running("frozen")
        proc.send_signal(signal.SIGSTOP)
        result = pydock("rm", "-f", "frozen")
        assert result.returncode == 0, result.stderr
        assert pydock.container_names() == []
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.communicate()


def test_a_record_that_is_not_an_object_is_reported(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "listy", "true")
    (pydock.root / "containers" / "listy" / "state.json").write_text("[]")
    result = pydock("ps", "-a")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "corrupt record" in pydock("inspect", "listy").stderr


def test_inspect_and_image_rm_report_each_bad_name_and_go_on(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "real", "true")
    result = pydock("inspect", "ghost", "real", "phantom")
    assert result.returncode == 125
    assert [info["Name"] for info in json.loads(result.stdout)] == ["real"]
    assert result.stderr == ("pydock: no such container: ghost\n"
                             "pydock: no such container: phantom\n")
    result = pydock("image", "rm", "nothing", "pydock/default")
    assert result.returncode == 125
    assert "no such image: nothing:latest" in result.stderr
    assert "in use by container(s) real" in result.stderr

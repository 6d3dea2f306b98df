"""``start [-a] [-i]`` and ``restart``: an exited container runs again, with the same
root and spec, its output appended to its log."""

from __future__ import annotations

import pytest

from pydock.testing.cli import Pydock


def test_start_attached_reruns_with_the_same_root_and_appends_to_the_log(
        pydock: Pydock, image: tuple[str, ...]) -> None:
    script = "echo run >> /count; wc -l < /count; exit 3"
    result = pydock("run", "--name", "box", *image, "sh", "-c", script)
    assert (result.returncode, result.stdout) == (3, "1\n")
    first = pydock.inspect("box")["State"]
    result = pydock("start", "-a", "box")
    assert (result.returncode, result.stdout, result.stderr) == (3, "2\n", "")
    assert pydock.ok("logs", "box") == "1\n2\n"
    again = pydock.inspect("box")["State"]
    assert again["Status"] == "exited" and again["ExitCode"] == 3
    assert again["StartedAt"] > first["StartedAt"]
    # Detached: prints the reference, as docker does; wait gives the code.
    assert pydock.ok("start", "box") == "box\n"
    assert pydock.ok("wait", "box") == "3\n"
    assert pydock.ok("logs", "box") == "1\n2\n3\n"


def test_start_i_connects_stdin_and_start_of_a_running_one_is_a_no_op(
        pydock: Pydock) -> None:
    pydock.ok("run", "--name", "box", "sh", "-c", "cat")
    assert pydock.ok("start", "-a", "box", input="ignored\n") == ""
    assert pydock.ok("start", "-i", "box", input="typed\n") == "typed\n"
    container_id = pydock.ok("run", "-d", "--name", "bg", "sleep", "60").strip()
    pid = pydock.inspect("bg")["State"]["Pid"]
    assert pydock.ok("start", container_id[:6]) == container_id[:6] + "\n"
    assert pydock.inspect("bg")["State"]["Pid"] == pid
    pydock.ok("rm", "-f", "bg")


def test_restart_stops_and_starts_again(pydock: Pydock, image: tuple[str, ...]) -> None:
    pydock.ok("run", "-d", "--name", "box", *image, "sh", "-c",
              "echo up; trap 'echo term; exit 0' TERM; while :; do sleep 0.1; done")
    pid = pydock.wait_running("box")["State"]["Pid"]
    assert pydock.ok("restart", "-t", "5", "box") == "box\n"
    state = pydock.wait_running("box")["State"]
    assert state["Pid"] != pid
    pydock.ok("stop", "-t", "5", "box")
    assert pydock.ok("logs", "box") == "up\nterm\nup\nterm\n"
    # An exited container is simply started.
    assert pydock.ok("restart", "box") == "box\n"
    pydock.wait_running("box")
    pydock.ok("rm", "-f", "box")


@pytest.mark.parametrize("command", [["start"], ["start", "-a"], ["restart"]])
def test_start_and_restart_of_no_container(pydock: Pydock, command: list[str]) -> None:
    pydock.ok("run", "--name", "box", "true")
    for reference in ("nosuch", "../box", "0" * 65):
        pydock.refused(*command, reference, match="no such container")


def test_start_attached_takes_one_container(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "a", "true")
    pydock.ok("run", "--name", "b", "true")
    pydock.refused("start", "-a", "a", "b", match="one container at a time")
    result = pydock("start", "a", "nosuch", "b")
    assert (result.returncode, result.stdout) == (125, "a\nb\n")


def test_top_lists_the_containers_processes_with_host_pids(pydock: Pydock,
                                                           image: tuple[str, ...]) -> None:
    container_id = pydock.ok("run", "-d", "--name", "box", *image, "sh", "-c",
                             "sleep 600 & sleep 601 & wait").strip()
    pid = pydock.wait_running("box")["State"]["Pid"]
    deadline = 50
    while deadline and "sleep 601" not in (listing := pydock.ok("top", container_id[:6])):
        deadline -= 1
    lines = listing.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = {line.split(None, 7)[7]: line.split() for line in lines[1:]}
    assert set(rows) == {"sh -c sleep 600 & sleep 601 & wait", "sleep 600", "sleep 601"}
    assert rows["sh -c sleep 600 & sleep 601 & wait"][1] == str(pid)
    assert rows["sleep 600"][2] == str(pid) and rows["sleep 600"][0] == "root"
    pydock.ok("rm", "-f", "box")
    pydock.refused("top", "box", match="no such container")


def test_top_of_a_stopped_container_is_refused(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "done", "true")
    pydock.refused("top", "done", match="is not running")
    pydock.refused("top", "../done", match="no such container")

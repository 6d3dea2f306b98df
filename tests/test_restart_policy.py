"""``run --restart``: the container's monitor starts it again as the policy says; ``stop``
ends it for good."""

from __future__ import annotations

import time

import pytest

from pydock.testing.cli import Pydock


def test_on_failure_2_restarts_exactly_twice(pydock: Pydock, image: tuple[str, ...]) -> None:
    result = pydock("run", "--name", "box", "--restart", "on-failure:2", *image,
                    "sh", "-c", "echo run; exit 3")
    assert (result.returncode, result.stdout) == (3, "run\nrun\nrun\n")
    info = pydock.inspect("box")
    assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure",
                                                   "MaximumRetryCount": 2}
    assert pydock.ok("logs", "box") == "run\nrun\nrun\n"
    # Success ends it at once.
    pydock.ok("run", "-d", "--name", "ok", "--restart", "on-failure", *image, "true")
    assert pydock.ok("wait", "ok") == "0\n"
    assert pydock.inspect("ok")["RestartCount"] == 0


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_always_restarts_until_stopped(pydock: Pydock, policy: str) -> None:
    container_id = pydock.ok("run", "-d", "--name", "box", "--restart", policy, "sh", "-c",
                             "echo run; sleep 0.3").strip()
    deadline = time.monotonic() + 30
    while pydock.inspect("box")["RestartCount"] < 3:
        assert time.monotonic() < deadline, "not restarted three times"
        time.sleep(0.1)
    pydock.ok("stop", "-t", "2", container_id[:6])
    assert pydock.ok("wait", "box") in ("0\n", "143\n")
    count = pydock.inspect("box")["RestartCount"]
    time.sleep(1.5)  # longer than the back-off so far: nothing starts it again
    state = pydock.inspect("box")
    assert (state["State"]["Status"], state["RestartCount"]) == ("exited", count)
    # Started by hand, the policy applies again.
    pydock.ok("start", "box")
    while pydock.inspect("box")["RestartCount"] < 1:
        assert time.monotonic() < deadline + 30
        time.sleep(0.1)
    pydock.ok("rm", "-f", "box")
    assert pydock.container_names() == []


def test_a_command_that_cannot_start_is_restarted_as_often_as_said(pydock: Pydock) -> None:
    result = pydock("run", "--name", "box", "--restart", "on-failure:1", "no-such-command")
    assert result.returncode == 127
    assert result.stderr.count("executable file not found") == 1
    assert pydock.inspect("box")["RestartCount"] == 1


@pytest.mark.quick
@pytest.mark.parametrize(("args", "message"), [
    (("--restart", "sometimes"), "invalid --restart"),
    (("--restart", "always:3"), "only on-failure takes a count"),
    (("--restart", "on-failure:-1"), "only on-failure takes a count"),
    (("--restart", "on-failure:x"), "only on-failure takes a count"),
    (("--restart", "always", "--rm"), "--restart and --rm conflict"),
])
def test_bad_restart_policies(pydock: Pydock, args: tuple[str, ...], message: str) -> None:
    pydock.refused("run", *args, "true", match=message)
    assert pydock.container_names() == []

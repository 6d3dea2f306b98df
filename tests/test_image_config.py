"""The image config is honoured on run: Env, Cmd, Entrypoint, WorkingDir, User."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import tag_with_config

from pydock.testing.cli import Pydock


def test_entrypoint_and_cmd_combine_and_arguments_replace_cmd(pydock: Pydock) -> None:
    tag_with_config(pydock, "greeter", Entrypoint=["echo", "hello"], Cmd=["world"])
    assert pydock.ok("run", "--rm", "--image", "greeter") == "hello world\n"
    assert pydock.ok("run", "--rm", "--image", "greeter", "there") == "hello there\n"


def test_image_env_overrides_defaults_and_e_overrides_the_image(pydock: Pydock) -> None:
    tag_with_config(pydock, "envimg", Env=["PATH=/usr/bin:/bin", "COLOR=red", "TERM=dumb"],
                    Cmd=["env"])
    env = dict(line.split("=", 1) for line in
               pydock.ok("run", "--rm", "--image", "envimg", "-e", "COLOR=blue").splitlines())
    assert (env["PATH"], env["COLOR"], env["TERM"]) == ("/usr/bin:/bin", "blue", "dumb")


def test_working_dir_and_user_of_the_image(pydock: Pydock) -> None:
    tag_with_config(pydock, "svc", WorkingDir="/srv/app", User="nobody",
                    Cmd=["sh", "-c", "pwd; id -u"])
    assert pydock.ok("run", "--rm", "--image", "svc") == "/srv/app\n65534\n"
    assert pydock.ok("run", "--rm", "--image", "svc", "-u", "0", "-w", "/tmp", "sh", "-c",
                     "pwd; id -u") == "/tmp\n0\n"


@pytest.mark.parametrize(("run_config", "message"), [
    ({"Cmd": []}, "no command given and the image has no default command"),
    ({"Cmd": ["true"], "WorkingDir": "relative"}, "must be an absolute path"),
    ({"Cmd": ["true"], "User": "no such user"}, "invalid user"),
])
def test_unusable_image_configs_are_refused_clearly(pydock: Pydock, run_config: dict[str, Any],
                                                    message: str) -> None:
    tag_with_config(pydock, "odd", **run_config)
    pydock.refused("run", "--rm", "--image", "odd", match=message)
    assert pydock.container_names() == []

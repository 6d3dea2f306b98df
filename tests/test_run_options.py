"""``run --entrypoint`` and ``--tmpfs``, ``wait``, and ``logs --tail/--since/-t``: docker's
flags, on the default image and on a layered one."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import Layer, load_layered

from pydock.testing.cli import Pydock

# -- --entrypoint -----------------------------------------------------------------

def test_entrypoint_replaces_the_images_and_its_cmd(pydock: Pydock, tmp_path: Path,
                                                    layers: list[Layer]) -> None:
    # An image whose ENTRYPOINT is a program that is not a shell (python3, in the issue).
    load_layered(pydock, tmp_path, layers, "pinned", Entrypoint=["/bin/echo", "pinned:"],
                 Cmd=["default-arg"])
    assert pydock.ok("run", "--rm", "--image", "pinned") == "pinned: default-arg\n"
    assert pydock.ok("run", "--rm", "--image", "pinned", "x") == "pinned: x\n"
    # The image's Cmd was meant for its entrypoint: it goes with it, as in docker.
    assert pydock.ok("run", "--rm", "--image", "pinned", "--entrypoint", "/bin/sh", "-c",
                     "echo shell; cat /etc/greeting") == "shell\nhello from the middle\n"
    assert pydock.ok("run", "--rm", "--image", "pinned", "--entrypoint", "hostname",
                     "--hostname", "h") == "h\n"
    assert pydock.ok("run", "--rm", "--image", "pinned", "--entrypoint", "",
                     "echo", "cleared") == "cleared\n"
    pydock.refused("run", "--rm", "--image", "pinned", "--entrypoint", "",
                   match="no command given")
    assert pydock.ok("run", "--rm", "--entrypoint", "echo", "on", "default") == "on default\n"


# -- --tmpfs ------------------------------------------------------------------------

def test_tmpfs_is_writable_on_a_read_only_root_with_dockers_flags(
        pydock: Pydock, image: tuple[str, ...]) -> None:
    script = ("echo data > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/mounts; "
              "touch /elsewhere 2>/dev/null || echo root-read-only")
    out = pydock.ok("run", "--rm", "--read-only", "--tmpfs", "/scratch", *image,
                    "sh", "-c", script)
    data, mount, verdict = out.splitlines()
    assert (data, verdict) == ("data", "root-read-only")
    fields = mount.split()
    assert fields[2] == "tmpfs"
    assert {"rw", "nosuid", "nodev", "noexec"} <= set(fields[3].split(","))


def test_tmpfs_options_are_applied(pydock: Pydock, image: tuple[str, ...]) -> None:
    out = pydock.ok("run", "--rm", "--tmpfs", "/run/x:exec,size=1m,mode=700,uid=5", *image,
                    "sh", "-c", "grep ' /run/x ' /proc/mounts; stat -c '%a %u' /run/x")
    mount, mode = out.splitlines()
    options = set(mount.split()[3].split(","))
    assert "noexec" not in options and {"nosuid", "nodev", "size=1024k", "mode=700",
                                        "uid=5"} <= options
    assert mode == "700 5"
    out = pydock.ok("run", "--rm", "--tmpfs", "/ro:ro", *image, "sh", "-c",
                    "touch /ro/x 2>/dev/null || echo refused")
    assert out == "refused\n"


@pytest.mark.quick
@pytest.mark.parametrize(("flag", "message"), [
    ("relative", "DST must be an absolute path"),
    ("/", "DST must not be /"),
    ("/proc/x", "under /proc"),
    ("/dev", "under /dev"),
    ("/x:dev", "dev is not allowed"),
    ("/x:size=lots", "bad value 'lots' for size"),
    ("/x:mode=999", "bad value '999' for mode"),
    ("/x:bogus", "unknown option 'bogus'"),
    ("/x:nosuid,,ro", "an empty option"),
    ("/x:colour=red", "unknown option 'colour'"),
])
def test_bad_tmpfs_is_refused_before_anything_exists(pydock: Pydock, flag: str,
                                                     message: str) -> None:
    pydock.refused("run", "--rm", "--tmpfs", flag, "true", match=message)
    assert pydock.container_names() == []


@pytest.mark.quick
def test_tmpfs_and_a_volume_on_one_path_are_refused(pydock: Pydock, tmp_path: Path) -> None:
    pydock.refused("run", "--rm", "-v", f"{tmp_path}:/x", "--tmpfs", "/x", "true",
                   match="duplicate mount point")
    pydock.refused("run", "--rm", "--tmpfs", "/x", "--tmpfs", "/x/", "true",
                   match="duplicate mount point")


def test_tmpfs_through_a_symlink_stays_in_the_container(pydock: Pydock, tmp_path: Path,
                                                        layers: list[Layer]) -> None:
    # DST resolved inside the root: /etc/greeting's directory via a symlink is the
    # container's /etc, never the host's.
    out = pydock.ok("run", "--rm", "--tmpfs", "/tmp/../etc/sub", "sh", "-c",
                    "grep ' /etc/sub ' /proc/mounts | cut -d' ' -f3")
    assert out == "tmpfs\n"
    assert not Path("/etc/sub").exists()


def test_tmpfs_is_shown_by_inspect(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "box", "--tmpfs", "/run:size=1m", "--tmpfs", "/cache", "true")
    assert pydock.inspect("box")["HostConfig"]["Tmpfs"] == {"/run": "size=1m", "/cache": ""}


# -- wait -------------------------------------------------------------------------

def test_wait_prints_the_exit_code_once_the_container_ends(pydock: Pydock,
                                                          image: tuple[str, ...]) -> None:
    container_id = pydock.ok("run", "-d", *image, "sh", "-c", "sleep 1; exit 7").strip()
    started = time.monotonic()
    assert pydock.ok("wait", container_id[:10]) == "7\n"
    assert time.monotonic() - started > 0.5
    assert pydock.ok("wait", container_id) == "7\n"  # ended already: at once


def test_wait_on_bad_references(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "done", "true")
    result = pydock("wait", "done", "nosuch")
    assert (result.returncode, result.stdout) == (125, "0\n")
    assert result.stderr == "pydock: no such container: nosuch\n"


# -- logs ---------------------------------------------------------------------------

def test_logs_tail_since_and_timestamps(pydock: Pydock, image: tuple[str, ...]) -> None:
    script = "echo one; printf 'tw'; sleep 0.2; echo o; echo err >&2; sleep 1.5; echo three"
    before = datetime.now(UTC)
    pydock.ok("run", "--name", "box", *image, "sh", "-c", script)
    assert pydock.ok("logs", "box") == "one\ntwo\nthree\n"
    # Lines of both streams count, as docker counts them.
    result = pydock("logs", "--tail", "3", "box")
    assert (result.stdout, result.stderr) == ("two\nthree\n", "err\n")
    result = pydock("logs", "--tail", "1", "box")
    assert (result.stdout, result.stderr) == ("three\n", "")
    assert pydock.ok("logs", "-n", "0", "box") == ""
    assert pydock.ok("logs", "--tail", "all", "box") == "one\ntwo\nthree\n"
    assert pydock.ok("logs", "--since", "1h", "box") == "one\ntwo\nthree\n"
    assert pydock.ok("logs", "--since", before.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "box") == "one\ntwo\nthree\n"
    assert pydock.ok("logs", "--since", str(int(time.time()) + 60), "box") == ""
    stamped = pydock.ok("logs", "-t", "box").splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three"]
    times = [datetime.fromisoformat(line.split(" ")[0][:26] + "+00:00") for line in stamped]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", line.split(" ")[0])
               for line in stamped)
    assert before.replace(microsecond=0) <= times[0] <= times[1] < times[2]
    # Unix seconds, between the second line and the third (1.5 s apart).
    between = f"{times[2].timestamp() - 0.7:.3f}"
    assert pydock.ok("logs", "--since", between, "box") == "three\n"
    result = pydock("logs", "-t", "--tail", "1", "box")
    assert result.stdout.endswith(" three\n") and result.stderr == ""


@pytest.mark.parametrize(("args", "message"), [
    (("--tail", "many"), "invalid --tail"),
    (("--since", "yesterday"), "invalid --since"),
    (("--since", "10x"), "invalid --since"),
])
def test_logs_bad_options_and_references(pydock: Pydock, args: tuple[str, ...],
                                         message: str) -> None:
    pydock.ok("run", "--name", "box", "true")
    pydock.refused("logs", *args, "box", match=message)
    pydock.refused("logs", "../box", match="no such container")

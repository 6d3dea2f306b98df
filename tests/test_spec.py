"""The container spec: flags and image config parsed once into an OCI-shaped document,
stored with the record, shown by inspect, and the only thing the runtime reads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pydock.core.containers import spec
from pydock.core.containers.spec import ExecOptions, RunOptions
from pydock.core.errors import PydockError
from pydock.core.runtime import capabilities, devices, spawn
from pydock.testing.cli import Pydock

IMAGE_CONFIG = {"Env": ["PATH=/bin", "LANG=C"], "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": ["echo hi"], "WorkingDir": "/srv", "User": "daemon"}


@pytest.mark.needs_root  # the spec keeps only capabilities this process holds
@pytest.mark.quick
def test_the_spec_holds_what_the_flags_and_the_image_say() -> None:
    options = RunOptions(command=("exit 3",), env=("A=1",), workdir="/tmp/../work",
                         network="host", read_only=True, tty=True,
                         volumes=("/srv/data:/data:ro", "/srv/log:/log"),
                         cap_drop=("net_raw",), security_opt=("no-new-privileges",))
    document = spec.build(options, IMAGE_CONFIG, "box", "/rootfs")
    process = document["process"]
    assert document["ociVersion"] == spec.OCI_VERSION
    assert process["args"] == ["/bin/sh", "-c", "exit 3"]
    assert (process["cwd"], process["user"], process["terminal"]) == \
        ("/work", {"username": "daemon"}, True)
    # On the host's network, the host's hostname, as in docker.
    assert {"PATH=/bin", "LANG=C", "A=1", f"HOSTNAME={os.uname().nodename}"} <= set(
        process["env"])
    assert "CAP_NET_RAW" not in process["capabilities"]["bounding"]
    assert process["capabilities"]["ambient"] == process["capabilities"]["inheritable"] == []
    assert process["noNewPrivileges"] is True
    assert document["root"] == {"path": "/rootfs", "readonly": True}
    assert [m["destination"] for m in document["mounts"]] == ["/data", "/log"]
    assert document["mounts"][0]["options"] == ["rbind", "ro"]
    # --network host: the host's network namespace, so none of its own.
    assert [n["type"] for n in document["linux"]["namespaces"]] == \
        ["pid", "mount", "uts", "ipc", "cgroup"]
    assert "/proc/kcore" in document["linux"]["maskedPaths"]
    # No limits: docker's device allowlist only.
    assert document["linux"]["resources"] == {"devices": devices.resource_rules()}
    assert document["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    json.dumps(document)  # a record is JSON: everything in it must be


@pytest.mark.needs_root  # the spec keeps only capabilities this process holds
@pytest.mark.quick
def test_the_runtime_reads_its_process_from_the_spec_alone() -> None:
    options = RunOptions(command=("true",), env=("A=1",), user="7:8",
                         volumes=("/srv:/data:ro",), cap_add=("SYS_TIME",))
    process = spawn.process_spec(spec.build(options, {}, "box", "/rootfs"))
    assert (process.argv, process.workdir, process.hostname, process.network) == \
        (["true"], "/", "box", "none")
    assert (process.env["A"], process.user) == ("1", "7:8")
    assert [(v.source, v.destination, v.read_only) for v in process.root.volumes] == \
        [("/srv", "/data", True)]
    assert process.capability_set == (*capabilities.DOCKER_DEFAULT, "SYS_TIME")
    assert {(device.path, device.source) for device in process.root.devices} == {
        (f"/dev/{name}", f"/dev/{name}") for name in ("null", "zero", "full", "random",
                                                      "urandom", "tty")}


@pytest.mark.quick
def test_exec_keeps_the_containers_capabilities_and_takes_its_own_command() -> None:
    container = spec.build(RunOptions(command=("sleep", "9"), cap_drop=("ALL",),
                                      workdir="/w", env=("A=1",)), {}, "box", "/rootfs")
    process = spec.exec_spec(container, ExecOptions(command=("id",), env=("B=2",)))
    assert process["process"]["args"] == ["id"]
    assert process["process"]["cwd"] == "/w"
    assert {"A=1", "B=2"} <= set(process["process"]["env"])
    assert process["process"]["capabilities"] == container["process"]["capabilities"]
    with pytest.raises(PydockError, match="no command given"):
        spec.exec_spec(container, ExecOptions(command=()))


@pytest.mark.quick
@pytest.mark.parametrize(("options", "message"), [
    (RunOptions(command=(), hostname="-bad"), "invalid hostname"),
    (RunOptions(command=()), "no command given"),
    (RunOptions(command=("x",), workdir="rel"), "must be an absolute path"),
    (RunOptions(command=("x",), env=("=x",)), "invalid environment variable"),
    (RunOptions(command=("x",), volumes=("data:/x",)), "named volumes are not supported"),
    (RunOptions(command=("x",), security_opt=("apparmor=x",)), "is not supported"),
    (RunOptions(command=("x",), security_opt=("seccomp=/nonexistent.json",)),
     r"opening seccomp profile \(/nonexistent.json\) failed: No such file or directory"),
])
def test_a_bad_flag_is_refused_while_the_spec_is_built(options: RunOptions,
                                                      message: str) -> None:
    with pytest.raises(PydockError, match=message):
        spec.build(options, {}, "box", "/rootfs")


@pytest.mark.needs_root  # the spec keeps only capabilities this process holds
@pytest.mark.quick
def test_legacy_record_fields_become_the_same_spec() -> None:
    options = RunOptions(command=("sh",), env=("A=1",), network="host", hostname="box",
                         read_only=True, volumes=("/srv:/data:ro",), cap_add=("SYS_TIME",))
    current = spec.build(options, {}, "box", "")
    given = json.loads(current["annotations"][spec.HOST_CONFIG_ANNOTATION])
    legacy = spec.from_legacy_record({
        "command": ["sh"], "env": current["process"]["env"], "workdir": "/",
        "hostname": "box", "network": "host", "read_only": True, "user": "",
        "volumes": ["/srv:/data:ro"], "cap_add": given["CapAdd"],
        "cap_drop": given["CapDrop"], "security_opt": []})
    # Such a container ran before pydock had seccomp: unfiltered, as it was.
    assert legacy == {**current, "linux": {**current["linux"], "seccomp": None}}


def test_inspect_shows_the_spec_the_container_ran_with(pydock: Pydock, tmp_path: Path) -> None:
    source = tmp_path / "data"
    pydock.ok("run", "--name", "box", "-m", "64m", "--pids-limit", "50", "-e", "A=1",
              "-v", f"{source}:/data", "--cap-drop", "CHOWN", "sh", "-c",
              "grep CapEff /proc/self/status; hostname")
    info = pydock.inspect("box")
    document = info["Spec"]
    assert document["process"]["args"] == ["sh", "-c", "grep CapEff /proc/self/status; hostname"]
    resources = document["linux"]["resources"]
    assert resources.pop("devices") == devices.resource_rules()
    assert resources == {"memory": {"limit": 64 << 20, "swap": 64 << 20},
                         "pids": {"limit": 50}}
    assert document["mounts"] == [{"destination": "/data", "type": "bind",
                                   "source": str(source), "options": ["rbind"]}]
    # The process got exactly the capabilities the spec lists.
    effective = document["process"]["capabilities"]["effective"]
    granted = [name.removeprefix("CAP_") for name in effective]
    cap_eff, hostname = pydock.ok("logs", "box").split("\n")[:2]
    assert int(cap_eff.split()[1], 16) == capabilities.mask(granted)
    assert hostname == document["hostname"] == "box"
    assert info["HostConfig"]["CapDrop"] == ["CAP_CHOWN"]

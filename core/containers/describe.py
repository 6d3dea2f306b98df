"""``inspect`` of a container: its record as docker's ``inspect`` shows a container."""

from __future__ import annotations

import contextlib
from typing import Any

from pydock.core.containers import spec
from pydock.core.containers.liveness import live_status
from pydock.core.containers.spec import BRIDGE
from pydock.core.containers.state import RUNNING, ContainerRecord
from pydock.core.containers.store import ContainerStore
from pydock.core.errors import PydockError
from pydock.core.plugins import driver_home
from pydock.core.runtime.volumes import Volume


def describe(containers: ContainerStore, record: ContainerRecord) -> dict[str, Any]:
    """docker-inspect-style description of the container of ``record``."""
    status = live_status(record)
    process = record.spec["process"]
    graph_data: dict[str, str] = {}
    with contextlib.suppress(PydockError):
        cls = containers.registry.driver_class(record.driver)
        graph_data = cls(driver_home(containers.root, record.driver)).metadata(
            record.id, containers.images.layer_paths(record.layers))
    etc = containers.state.path(record.name)

    def etc_path(file: str) -> str:
        path = etc / file
        return str(path) if path.exists() else ""  # a container from before they were kept

    return {
        "Id": record.id,
        "Name": record.name,
        "Created": record.created,
        "Path": record.command[0],
        "Args": record.command[1:],
        "State": {
            "Status": status,
            "Running": status == RUNNING,
            "OOMKilled": record.oom_killed,
            "Pid": record.pid if status == RUNNING else 0,
            "ExitCode": record.exit_code if record.exit_code is not None else 0,
            "Error": record.error,
            "StartedAt": record.started,
            "FinishedAt": record.finished,
        },
        "RestartCount": record.restart_count,
        "Image": f"sha256:{record.image_id.removeprefix('sha256:')}",
        "GraphDriver": {"Name": record.driver, "Data": graph_data},
        "Config": {
            "Hostname": record.spec["hostname"],
            "Env": process["env"],
            "Cmd": record.command,
            "Image": record.image,
            "WorkingDir": process["cwd"],
            "User": process["user"]["username"],
        },
        "ResolvConfPath": etc_path("resolv.conf"),
        "HostnamePath": etc_path("hostname"),
        "HostsPath": etc_path("hosts"),
        "Mounts": [Volume.from_mount(mount).describe() for mount in record.spec["mounts"]
                   if mount.get("type", "bind") == "bind"],
        "HostConfig": spec.host_config(record.spec),
        "NetworkSettings": _network_settings(containers, record),
        # What the runtime runs, as an OCI runtime would read it from config.json.
        "Spec": record.spec,
    }


def _network_settings(containers: ContainerStore, record: ContainerRecord) -> dict[str, Any]:
    if spec.network_mode(record.spec) == BRIDGE:
        from pydock.core.containers import network

        return network.settings(containers.root, record.id)
    return {"Bridge": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "MacAddress": "", "Ports": {}}

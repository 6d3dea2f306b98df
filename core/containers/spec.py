"""The container spec: what a container is, built once from the command line and the image.

``pydock run``'s flags and the image's config are parsed and checked here, in one place,
into one document shaped like the OCI runtime spec's ``config.json`` (the file runc, crun
and every other OCI runtime read):

- ``process``: ``args`` (the image's Entrypoint and Cmd, or the command given), ``env``,
  ``cwd``, ``user``, ``terminal``, ``capabilities``, ``rlimits``, ``noNewPrivileges``;
- ``root``: where the storage driver assembles the root filesystem, and ``readonly``;
- ``hostname``; ``mounts``: the ``-v`` bind mounts, in the order they are mounted;
- ``linux``: ``namespaces``, ``resources`` (``-m``, ``--cpus``, ``--pids-limit``, and
  ``devices``: docker's device allowlist plus ``--device``), ``devices`` (the default
  nodes and ``--device``), ``maskedPaths``, ``readonlyPaths`` and ``seccomp``;
- ``annotations``: what docker's ``inspect`` shows as given (``HostConfig.Binds``,
  ``CapAdd``, ``CapDrop``, ``SecurityOpt``), which the resolved values cannot tell.

The spec is stored in the container's record and the runtime consumes only it
(:func:`pydock.core.runtime.spawn.process_spec`), as runc consumes ``config.json``; so data
flows one way: CLI -> spec -> record -> runtime -> driver mounts. A new ``run`` flag is
parsed here, lands in the spec, and is read by the runtime from there.

Where pydock departs from the OCI spec, and why:

- ``process.user`` is ``{"username": SPEC}``: docker's ``-u NAME|UID[:GROUP|GID]`` as given,
  resolved to numbers inside the container's own ``/etc/passwd`` and ``/etc/group`` when
  the process starts (docker's daemon does the same before it hands runc numbers), never
  in the host's files. An empty one is root.
- ``root.path`` is absolute: there is no bundle directory for it to be relative to.
- ``linux.devices`` entries carry ``hostPath``: the node is the host's, bind mounted,
  never made with mknod (:mod:`pydock.core.runtime.devices` says why).
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from pydock.core.errors import PydockError
from pydock.core.images.store import DEFAULT_PATH
from pydock.core.runtime import capabilities, devices, etcfiles, seccomp, security_opts
from pydock.core.runtime.rootfs import MASKED_PATHS, READ_ONLY_PATHS
from pydock.core.runtime.users import validate_user_spec
from pydock.core.runtime.volumes import Volume, parse_volumes

if TYPE_CHECKING:  # --tmpfs is imported only by the runs that give it
    from pydock.core.runtime.tmpfs import Tmpfs

OCI_VERSION = "1.2.0"
# Docker's inspect fields kept as given, in one annotation (annotations are strings).
HOST_CONFIG_ANNOTATION = "org.pydock.host-config"
DEFAULT_DRIVER = "overlay"
HOSTNAME_MAX = 64
BRIDGE = "bridge"  # docker's default network, and pydock's
NETWORKS = (BRIDGE, "host", "none")

# Compiled (and cached) by re on first use: most runs give neither -e nor --hostname.
_ENV_KEY = r"[^=\x00]+"
_HOSTNAME = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"


class RunOptions(NamedTuple):
    """``pydock run``'s options, as given on the command line."""

    command: tuple[str, ...]
    name: str | None = None
    driver: str = DEFAULT_DRIVER
    image: str | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    hostname: str | None = None
    network: str | None = "none"  # None (no --network given): the storage root's default
    read_only: bool = False
    remove: bool = False
    user: str | None = None
    detach: bool = False
    interactive: bool = False
    tty: bool = False
    volumes: tuple[str, ...] = ()
    memory: str | None = None
    cpus: str | None = None
    pids_limit: str | None = None
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    entrypoint: str | None = None  # "" clears the image's, as docker's --entrypoint ""
    tmpfs: tuple[str, ...] = ()
    init: bool = False
    restart: str = "no"  # docker's --restart policy
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    add_host: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    publish_all: bool = False


class ExecOptions(NamedTuple):
    """``pydock exec``'s options, as given on the command line."""

    command: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    interactive: bool = False
    tty: bool = False


def build(options: RunOptions, image_config: dict[str, Any], name: str,
          rootfs: str) -> dict[str, Any]:
    """The spec of a container named ``name`` run with ``options`` from an image whose
    config is ``image_config``, its root assembled at ``rootfs``; PydockError for anything
    invalid, before anything exists."""
    if options.hostname is not None:
        validate_hostname(options.hostname)
    if options.network is None or options.network not in NETWORKS:
        raise PydockError(f"unknown network {options.network!r}: expected one of "
                          f"{', '.join(NETWORKS)}")
    # docker: on the host's network, the host's hostname.
    hostname = options.hostname or (os.uname().nodename if options.network == "host"
                                    else name)
    dns = etcfiles.parse_dns(options.dns)
    dns_search = etcfiles.parse_dns_search(options.dns_search)
    extra_hosts = etcfiles.parse_add_host(options.add_host)
    if (options.publish or options.publish_all) and options.network != "bridge":
        raise PydockError(f"-p and -P publish ports of a container on the bridge network, "
                          f"not on --network {options.network}")
    bindings: dict[str, list[dict[str, str]]] = {}
    if options.publish or options.publish_all:
        from pydock.core.containers.network import parse_publish

        for port in parse_publish(options.publish, False, None):
            bindings.setdefault(f"{port.port}/{port.proto}", []).append(
                {"HostIp": port.host_ip, "HostPort": str(port.host_port or "")})
        parse_publish((), options.publish_all, image_config.get("ExposedPorts"))
    entrypoint = image_config.get("Entrypoint") or []
    image_cmd = image_config.get("Cmd") or []
    if options.entrypoint is not None:
        # As docker: --entrypoint replaces the image's, and the image's Cmd goes with it
        # (its arguments were meant for the entrypoint replaced).
        entrypoint, image_cmd = [options.entrypoint], []
    if entrypoint == [""]:  # docker's reset: how `--entrypoint ""` clears an image's
        entrypoint = []
    args = list(entrypoint) + list(options.command or image_cmd)
    if not args:
        raise PydockError("no command given and the image has no default command")
    if not entrypoint and options.command and options.command[0].startswith("-"):
        # What `run` could not parse as its own option, and no entrypoint takes (see
        # pydock.core.cli.common.RUN_ONLY_CONTEXT).
        raise PydockError(f"unknown option {options.command[0]!r} (pydock's options go "
                          "before the command; an image's entrypoint, or --entrypoint, "
                          "takes options after it)")
    user = options.user if options.user is not None else str(image_config.get("User") or "")
    if user:
        validate_user_spec(user)
    cap_add, cap_drop = capabilities.effective_add_drop(options.cap_add, options.cap_drop)
    capability_set = capabilities.resolve(cap_add, cap_drop)
    security_opt, profile = seccomp.given(options.security_opt)
    added = [devices.parse_device(text) for text in options.devices]
    volumes = parse_volumes(options.volumes)
    tmpfs_mounts = _tmpfs_mounts(options.tmpfs, volumes)
    init_mounts = []
    if options.init:
        from pydock.core.runtime import init

        init_mounts = [init.mount(init.binary())]
        args = [init.PATH, "--", *args]
    return _assemble(
        args=args, env=build_env(image_config.get("Env") or [], options.env, hostname),
        cwd=clean_workdir(options.workdir or image_config.get("WorkingDir") or "/"),
        user=user, terminal=options.tty, rootfs=rootfs, read_only=options.read_only,
        hostname=hostname, network=options.network,
        capability_set=capability_set,
        no_new_privileges=security_opts.no_new_privileges(options.security_opt),
        seccomp_filter=None if profile is None else seccomp.resolve(profile, capability_set),
        volumes=volumes, tmpfs=[*(tmpfs.to_mount() for tmpfs in tmpfs_mounts), *init_mounts],
        resources={**_resources(options), "devices": [
            *devices.resource_rules(), *(rule for _, rule in added)]},
        nodes=_device_entries([entry for entry, _ in added]),
        given={"Binds": list(options.volumes), "CapAdd": cap_add, "CapDrop": cap_drop,
               # Only when given: the annotation of a run without them is as it was.
               **({"Tmpfs": {tmpfs.destination: tmpfs.given for tmpfs in tmpfs_mounts}}
                  if tmpfs_mounts else {}),
               **({"Init": True} if options.init else {}),
               **({"RestartPolicy": parse_restart(options.restart, options.remove)}
                  if options.restart != "no" else {}),
               "SecurityOpt": security_opt, "NetworkMode": options.network,
               "Dns": list(dns), "DnsSearch": list(dns_search),
               "ExtraHosts": [f"{host}:{address}" for host, address in extra_hosts],
               "PortBindings": bindings, "PublishAllPorts": options.publish_all,
               # Not docker's HostConfig: what it publishes at each start (publish_request).
               **({"Publish": list(options.publish)} if options.publish else {}),
               **({"ExposedPorts": sorted(image_config.get("ExposedPorts") or {})}
                  if options.publish_all else {}),
               "Devices": [{"PathOnHost": entry["hostPath"], "PathInContainer": entry["path"],
                            "CgroupPermissions": rule["access"]} for entry, rule in added]})


def _assemble(*, args: list[str], env: list[str], cwd: str, user: str, terminal: bool,
              rootfs: str, read_only: bool, hostname: str, network: str,
              capability_set: tuple[str, ...], no_new_privileges: bool,
              seccomp_filter: dict[str, Any] | None,
              volumes: tuple[Volume, ...], resources: dict[str, Any],
              nodes: list[dict[str, Any]], given: dict[str, Any],
              tmpfs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The document itself, from values already checked."""
    granted = ["CAP_" + name for name in capability_set]
    namespaces = ["pid", "mount", "uts", "ipc", "cgroup"]
    if network != "host":  # none, or the bridge's namespace the runtime makes
        namespaces.append("network")
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"username": user},
            "args": args,
            "env": env,
            "cwd": cwd,
            # Docker's rule: the bounding, effective and permitted sets are the container's
            # capabilities; nothing is inheritable or ambient, so a non-root user's
            # processes get none of them.
            "capabilities": {"bounding": granted, "effective": granted, "permitted": granted,
                             "inheritable": [], "ambient": []},
            "rlimits": [],
            "noNewPrivileges": no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": read_only},
        "hostname": hostname,
        "mounts": [*(volume.to_mount() for volume in volumes), *(tmpfs or [])],
        "linux": {
            "namespaces": [{"type": namespace} for namespace in namespaces],
            "resources": resources,
            "devices": nodes,
            "maskedPaths": ["/" + path for path in MASKED_PATHS],
            "readonlyPaths": ["/" + path for path in READ_ONLY_PATHS],
            "seccomp": seccomp_filter,
        },
        "annotations": {HOST_CONFIG_ANNOTATION: json.dumps(given)},
    }


def from_legacy_record(fields: dict[str, Any]) -> dict[str, Any]:
    """The spec of a container recorded before records held one, from the loose fields
    such a record has (each checked by the caller), as that container was run. Its
    ``root.path`` is unknown (it was the driver's to say) and stays empty: nothing starts
    such a container again."""
    from pydock.core.runtime import cgroups

    cap_add, cap_drop = fields.get("cap_add", []), fields.get("cap_drop", [])
    limits = cgroups.Limits(fields.get("memory", 0), fields.get("nano_cpus", 0),
                            fields.get("pids_limit", 0))
    return _assemble(
        args=fields["command"], env=fields["env"], cwd=fields["workdir"],
        user=fields.get("user", ""), terminal=fields.get("tty", False), rootfs="",
        read_only=fields["read_only"], hostname=fields["hostname"],
        network=fields["network"],
        # What that container was given, not what pydock could give today: no host check.
        capability_set=_recorded_capabilities(cap_add, cap_drop),
        no_new_privileges=security_opts.no_new_privileges(fields.get("security_opt", [])),
        seccomp_filter=None,  # such a container ran before pydock had seccomp
        volumes=parse_volumes(fields.get("volumes", [])),
        resources={**limits.to_resources(), "devices": devices.resource_rules()},
        nodes=_device_entries([]),
        given={"Binds": fields.get("volumes", []), "CapAdd": cap_add, "CapDrop": cap_drop,
               "SecurityOpt": fields.get("security_opt", []),
               "NetworkMode": fields["network"], "Dns": [], "DnsSearch": [],
               "ExtraHosts": [], "PortBindings": {}, "PublishAllPorts": False,
               "Devices": []})


def _recorded_capabilities(cap_add: list[str], cap_drop: list[str]) -> tuple[str, ...]:
    try:
        return capabilities.resolve(cap_add, cap_drop)
    except PydockError:  # the host lacks one now: the record still says what was asked
        return tuple(name.removeprefix("CAP_") for name in cap_add if name != capabilities.ALL)


def exec_spec(container: dict[str, Any], options: ExecOptions) -> dict[str, Any]:
    """The spec of a process ``exec`` starts in a container whose spec is ``container``:
    the container's, with the command, user, working directory, environment and terminal
    that ``options`` give. As in docker, what the container's processes may do (their
    capabilities, no-new-privileges), exec'd ones may do."""
    if not options.command:
        raise PydockError("no command given")
    process = container["process"]
    user = options.user if options.user is not None else process["user"]["username"]
    if user:
        validate_user_spec(user)
    env = build_env(process["env"], options.env, container["hostname"])
    return {**container, "process": {
        **process, "terminal": options.tty, "user": {"username": user},
        "args": list(options.command), "env": env,
        "cwd": clean_workdir(options.workdir or process["cwd"])}}


def _tmpfs_mounts(specs: tuple[str, ...], volumes: tuple[Volume, ...]) -> list[Tmpfs]:
    """``--tmpfs``'s mounts; none, and no import, without the flag."""
    if not specs:
        return []
    from pydock.core.runtime.tmpfs import parse_tmpfs

    found = parse_tmpfs(specs)
    taken = {volume.destination for volume in volumes}
    for tmpfs in found:
        if tmpfs.destination in taken:
            raise PydockError(f"invalid --tmpfs {tmpfs.destination!r}: duplicate mount "
                              "point (a -v has it)")
    return list(found)


def _device_entries(added: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``linux.devices``: docker's default nodes, then ``--device``'s; a ``--device`` at a
    default node's path replaces it, as in docker."""
    entries = {device.path: device.to_spec() for device in devices.default_devices()}
    entries.update((entry["path"], entry) for entry in added)
    return list(entries.values())


def _resources(options: RunOptions) -> dict[str, Any]:
    """``linux.resources`` for ``-m``, ``--cpus`` and ``--pids-limit``; empty without them,
    and then not even this import (parse_limits reads the host's mount table)."""
    if (options.memory, options.cpus, options.pids_limit) == (None, None, None):
        return {}
    from pydock.core.runtime import cgroups

    return cgroups.parse_limits(options.memory, options.cpus,
                                options.pids_limit).to_resources()


def host_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Docker's ``inspect`` ``HostConfig`` of a container with this spec."""
    given = json.loads(spec["annotations"][HOST_CONFIG_ANNOTATION])
    namespaces = {namespace["type"] for namespace in spec["linux"]["namespaces"]}
    memory = nano_cpus = pids = 0
    if spec["linux"]["resources"]:
        from pydock.core.runtime import cgroups

        limits = cgroups.Limits.from_resources(spec["linux"]["resources"])
        memory, nano_cpus, pids = limits.memory, limits.nano_cpus, limits.pids
    return {
        "NetworkMode": given.get("NetworkMode") or (  # absent from older records
            "none" if "network" in namespaces else "host"),
        "ReadonlyRootfs": spec["root"]["readonly"],
        "Binds": given["Binds"] or None,  # docker's null when there are none
        "Memory": memory,
        "NanoCpus": nano_cpus,
        "PidsLimit": pids or None,  # docker's null: no limit
        "CapAdd": given["CapAdd"] or None,
        "CapDrop": given["CapDrop"] or None,
        "SecurityOpt": given["SecurityOpt"] or None,
        "Devices": given.get("Devices") or [],  # absent from records made before --device
        "Tmpfs": given.get("Tmpfs") or None,
        "Init": given.get("Init", False),
        "RestartPolicy": restart_policy(spec),
        "Dns": given.get("Dns") or [],
        "DnsSearch": given.get("DnsSearch") or [],
        "ExtraHosts": given.get("ExtraHosts") or None,  # docker's null when there are none
        "PortBindings": given.get("PortBindings") or {},
        "PublishAllPorts": given.get("PublishAllPorts", False),
    }


RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")


def parse_restart(text: str, remove: bool) -> dict[str, Any]:
    """docker's ``--restart``: no, always, unless-stopped, on-failure[:N] (N restarts at
    most; 0 or none: no limit), as inspect's ``HostConfig.RestartPolicy``."""
    name, sep, count = text.partition(":")
    if name not in RESTART_POLICIES:
        raise PydockError(f"invalid --restart {text!r}: expected one of no, always, "
                          "unless-stopped, on-failure[:N]")
    if sep and (name != "on-failure" or not re.fullmatch(r"[0-9]{1,9}", count)):
        raise PydockError(f"invalid --restart {text!r}: only on-failure takes a count, a "
                          "number of restarts (on-failure:3)")
    if remove and name != "no":
        raise PydockError("--restart and --rm conflict: a container removed when it exits "
                          "cannot be restarted")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def restart_policy(spec: dict[str, Any]) -> dict[str, Any]:
    """The container's restart policy (``HostConfig.RestartPolicy``)."""
    given = json.loads(spec["annotations"][HOST_CONFIG_ANNOTATION])
    policy: dict[str, Any] = given.get("RestartPolicy") or {"Name": "no",
                                                           "MaximumRetryCount": 0}
    return policy


def network_mode(spec: dict[str, Any]) -> str:
    """bridge, host or none."""
    mode: str = host_config(spec)["NetworkMode"]
    return mode


def etc_config(spec: dict[str, Any], address: str = "") -> etcfiles.EtcConfig:
    """What the container's /etc/hostname, /etc/hosts and /etc/resolv.conf say."""
    given = json.loads(spec["annotations"][HOST_CONFIG_ANNOTATION])
    return etcfiles.EtcConfig(
        hostname=spec["hostname"], network=host_config(spec)["NetworkMode"],
        address=address, dns=tuple(given.get("Dns") or ()),
        dns_search=tuple(given.get("DnsSearch") or ()),
        extra_hosts=tuple((host, address) for host, _, address in (
            entry.partition(":") for entry in given.get("ExtraHosts") or ())))


def publish_request(spec: dict[str, Any]) -> tuple[list[str], bool, dict[str, Any]]:
    """The container's ``-p`` values, ``-P``, and the ports its image exposed: what it
    publishes when it starts (at `run`, and anew at `start`)."""
    given = json.loads(spec["annotations"][HOST_CONFIG_ANNOTATION])
    return (list(given.get("Publish") or []), bool(given.get("PublishAllPorts")),
            {port: {} for port in given.get("ExposedPorts") or []})


def build_env(image_env: list[str], user_env: tuple[str, ...], hostname: str) -> list[str]:
    """Defaults, then the image's Env, then ``-e``: later wins. Never the host's environment,
    except for ``-e KEY`` without a value, which (as in docker) copies the host's KEY if set.
    """
    # HOME is defaulted later, from the passwd entry of the user the command runs as.
    env = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "TERM": "xterm"}
    for item in image_env:
        key, sep, value = item.partition("=")
        if sep and key:
            env[key] = value
    for item in user_env:
        key, sep, value = item.partition("=")
        if not re.fullmatch(_ENV_KEY, key) or "\x00" in value:
            raise PydockError(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return [f"{key}={value}" for key, value in env.items()]


def clean_workdir(path: str) -> str:
    """An absolute working directory, cleaned lexically as docker's filepath.Clean does:
    ``/a/../b`` is ``/b`` (no ``/a`` is created on the way) and ``..`` stops at ``/``."""
    if not path.startswith("/"):
        raise PydockError(f"working directory {path!r} must be an absolute path")
    return "/" + os.path.normpath(path).lstrip("/")


def validate_hostname(hostname: str) -> None:
    if len(hostname) > HOSTNAME_MAX or not re.fullmatch(_HOSTNAME, hostname):
        raise PydockError(f"invalid hostname {hostname!r}: expected {_HOSTNAME}, "
                          f"at most {HOSTNAME_MAX} characters")

"""What the CLI's container commands do: create, run, remove, describe.

This is where the pieces meet: the image store gives the layers, the plugin
manager gives the driver, the state store keeps the record, and the runtime
starts the process. The order of :meth:`Containers.run` is what makes a
failure at any step leave nothing behind: the record exists before storage
is prepared (so ``rm`` can always find what to clean), and storage is removed
before the record when anything fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydock.core.driver import StorageDriver
from pydock.core.errors import PydockError
from pydock.core.images import DEFAULT_IMAGE, DEFAULT_PATH, Image, ImageStore
from pydock.core.plugins import DriverRegistry, availability_of, driver_home
from pydock.core.state import (
    EXITED,
    RUNNING,
    ContainerRecord,
    StateStore,
    new_container_id,
    now,
    process_start_time,
    validate_name,
)
from pydock.core.users import validate_user_spec

if TYPE_CHECKING:
    from pydock.core.cgroups import Cgroup

DEFAULT_DRIVER = "overlay"
_ENV_KEY = re.compile(r"[^=\x00]+")
_HOSTNAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
HOSTNAME_MAX = 64
KILL_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunOptions:
    """``pydock run``'s options, as given on the command line."""

    command: tuple[str, ...]
    name: str | None = None
    driver: str = DEFAULT_DRIVER
    image: str | None = None
    env: tuple[str, ...] = ()
    workdir: str | None = None
    hostname: str | None = None
    network: str = "none"
    read_only: bool = False
    remove: bool = False
    user: str | None = None
    memory: str | None = None
    cpus: str | None = None
    pids_limit: str | None = None


class Containers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = StateStore(root)
        self.images = ImageStore(root)
        self._registry: DriverRegistry | None = None

    @property
    def registry(self) -> DriverRegistry:
        if self._registry is None:
            self._registry = DriverRegistry()
        return self._registry

    def driver(self, name: str) -> StorageDriver:
        """An instance of driver ``name``, refused with the driver's reason if it cannot work."""
        cls = self.registry.driver_class(name)
        home = driver_home(self.root, name)
        availability = availability_of(cls, home)
        if not availability.ok:
            raise PydockError(f"storage driver {name!r} is not available here: "
                              f"{availability.reason}")
        return cls(home)

    # -- run -------------------------------------------------------------

    def create(self, options: RunOptions) -> tuple[ContainerRecord, int]:
        """Validate everything, record the container and prepare its storage.

        Returns the record and the descriptor holding its lock (close it once the
        container is running or has failed to start).
        """
        image = self._image(options.image)
        driver = self.driver(options.driver)
        name = options.name if options.name is not None else self.state.generate_name()
        validate_name(name)
        if options.hostname is not None:
            validate_hostname(options.hostname)
        hostname = options.hostname or name
        config = image.run_config
        argv = list(config.get("Entrypoint") or []) + list(
            options.command or config.get("Cmd") or [])
        if not argv:
            raise PydockError("no command given and the image has no default command")
        user = options.user if options.user is not None else str(config.get("User") or "")
        if user:
            validate_user_spec(user)
        workdir = options.workdir or config.get("WorkingDir") or "/"
        if not workdir.startswith("/"):
            raise PydockError(f"working directory {workdir!r} must be an absolute path")
        memory = nano_cpus = pids_limit = 0
        if (options.memory, options.cpus, options.pids_limit) != (None, None, None):
            # Only then: a run without limits does no cgroup work, not even this import.
            from pydock.core import cgroups

            limits = cgroups.parse_limits(options.memory, options.cpus, options.pids_limit)
            memory, nano_cpus, pids_limit = limits.memory, limits.nano_cpus, limits.pids
        record = ContainerRecord(
            id=new_container_id(), name=name, driver=driver.name,
            image=options.image or DEFAULT_IMAGE, image_id=image.id, layers=image.diff_ids,
            command=argv, env=build_env(config.get("Env") or [], options.env, hostname),
            workdir=workdir, hostname=hostname, network=options.network,
            read_only=options.read_only, user=user, memory=memory, nano_cpus=nano_cpus,
            pids_limit=pids_limit)
        lock = self.state.create(record)
        try:
            driver.prepare(record.id, self.images.layer_paths(record.layers))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                driver.remove(record.id)
            self.state.delete(name)
            os.close(lock)
            if isinstance(exc, Exception) and not isinstance(exc, PydockError):
                raise PydockError(f"preparing storage ({driver.name}) failed: {exc}") from exc
            raise
        return record, lock

    def run(self, options: RunOptions) -> tuple[int, str]:
        """Create and run a container in the foreground; (exit code, error message)."""
        from pydock.core import runtime

        record, lock = self.create(options)
        cgroup: Cgroup | None = None
        try:
            try:
                driver = self.driver(record.driver)
                layers = self.images.layer_paths(record.layers)
                spec = runtime.ProcessSpec(
                    argv=record.command, env=dict(e.split("=", 1) for e in record.env),
                    workdir=record.workdir, hostname=record.hostname, network=record.network,
                    read_only=record.read_only, user=record.user)
                if record.has_limits:  # otherwise no cgroup work at all
                    from pydock.core import cgroups

                    cgroup = cgroups.create(record.id, cgroups.Limits(
                        record.memory, record.nano_cpus, record.pids_limit))
                started = runtime.start(spec, str(driver.rootfs_dir(record.id)),
                                        driver.mounts(record.id, layers),
                                        cgroup.join if cgroup is not None else None)
                # Still under the lock taken at creation: rm and prune see it running.
                record.status, record.pid, record.started = RUNNING, started.pid, now()
                record.pid_start = process_start_time(started.pid)
                self.state.save(record)
            finally:
                os.close(lock)
                if cgroup is not None:
                    cgroup.close()
            exited = runtime.wait(started)
            self._update(record, status=EXITED, pid=0, exit_code=exited.code,
                         error=exited.error, finished=now(),
                         oom_killed=cgroup is not None and cgroup.oom_killed())
        finally:
            if cgroup is not None:
                # Should this fail, rm and prune try again.
                with contextlib.suppress(PydockError):
                    cgroup.remove()
            if options.remove:
                with contextlib.suppress(PydockError, OSError):
                    self.remove(record.name, force=True, only_id=record.id)
        return exited.code, exited.error

    def _update(self, ours: ContainerRecord, **changes: Any) -> None:
        """Change our container's record, unless it was removed meanwhile (``rm -f`` during
        the run), even if a new container has taken its name since."""
        with contextlib.suppress(PydockError, FileNotFoundError), self.state.locked(ours.name):
            record = self.state.load(ours.name)
            if record.id != ours.id:
                return
            for key, value in changes.items():
                setattr(record, key, value)
            self.state.save(record)

    def _image(self, ref: str | None) -> Image:
        if ref is not None:
            return self.images.resolve(ref)
        try:
            return self.images.resolve(DEFAULT_IMAGE)
        except PydockError:
            # First use of this storage root: build it (imports tarfile, runs busybox).
            from pydock.core.default_image import build_default_image

            return build_default_image(self.images)

    # -- rm --------------------------------------------------------------

    def remove(self, name: str, force: bool, only_id: str | None = None) -> None:
        """Remove a container: kill it first if ``force``, then its storage, then its record.

        With ``only_id``, a container that has taken the name since is left alone.
        """
        with self.state.locked(name):
            record = self.state.load(name)
            if only_id is not None and record.id != only_id:
                return
            if is_running(record):
                if not force:
                    raise PydockError(f"container {name} is running: stop it first or use "
                                      "rm -f")
                _kill_and_wait(record)
            if record.has_limits:
                from pydock.core import cgroups

                cgroups.remove(record.id)
            driver = self.registry.driver_class(record.driver)(
                driver_home(self.root, record.driver))
            driver.remove(record.id)
            self.state.delete(name)

    def prune(self) -> list[str]:
        removed = []
        for name in self.state.names():
            with contextlib.suppress(PydockError):
                if not is_running(self.state.load(name)):
                    self.remove(name, force=False)
                    removed.append(name)
        return removed

    def users_of(self, image: Image) -> list[str]:
        """Names of the containers created from ``image``."""
        users = []
        for name in self.state.names():
            with contextlib.suppress(PydockError):
                if self.state.load(name).image_id == image.id:
                    users.append(name)
        return users

    # -- describe --------------------------------------------------------

    def records(self) -> list[ContainerRecord]:
        records = []
        for name in self.state.names():
            with contextlib.suppress(PydockError):
                records.append(self.state.load(name))
        return records

    def inspect(self, name: str) -> dict[str, Any]:
        """docker-inspect-style description of one container."""
        record = self.state.load(name)
        status = live_status(record)
        graph_data: dict[str, str] = {}
        with contextlib.suppress(PydockError):
            cls = self.registry.driver_class(record.driver)
            graph_data = cls(driver_home(self.root, record.driver)).metadata(
                record.id, self.images.layer_paths(record.layers))
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
            "Image": f"sha256:{record.image_id.removeprefix('sha256:')}",
            "GraphDriver": {"Name": record.driver, "Data": graph_data},
            "Config": {
                "Hostname": record.hostname,
                "Env": record.env,
                "Cmd": record.command,
                "Image": record.image,
                "WorkingDir": record.workdir,
                "User": record.user,
            },
            "HostConfig": {
                "NetworkMode": record.network,
                "ReadonlyRootfs": record.read_only,
                "Memory": record.memory,
                "NanoCpus": record.nano_cpus,
                "PidsLimit": record.pids_limit or None,  # docker shows no limit as null
            },
        }


def is_running(record: ContainerRecord) -> bool:
    """Whether the recorded process is alive: the pid *and* its start time must match."""
    return (record.status == RUNNING and record.pid_start != 0
            and process_start_time(record.pid) == record.pid_start)


def live_status(record: ContainerRecord) -> str:
    # A record left "running" by a CLI that was killed, for a process that is gone.
    if record.status == RUNNING and not is_running(record):
        return EXITED
    return record.status


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
        if not _ENV_KEY.fullmatch(key) or "\x00" in value:
            raise PydockError(f"invalid environment variable {item!r}: expected KEY=VALUE")
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return [f"{key}={value}" for key, value in env.items()]


def validate_hostname(hostname: str) -> None:
    if len(hostname) > HOSTNAME_MAX or not _HOSTNAME.fullmatch(hostname):
        raise PydockError(f"invalid hostname {hostname!r}: expected {_HOSTNAME.pattern}, "
                          f"at most {HOSTNAME_MAX} characters")


def _kill_and_wait(record: ContainerRecord) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + KILL_TIMEOUT
    while process_start_time(record.pid) == record.pid_start:
        if time.monotonic() > deadline:
            raise PydockError(f"container {record.name} (pid {record.pid}) did not die "
                              f"within {KILL_TIMEOUT:.0f}s of SIGKILL")
        time.sleep(0.01)

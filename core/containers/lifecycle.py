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
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydock.core import failpoints
from pydock.core.containers.state import (
    CREATED,
    EXITED,
    RUNNING,
    ContainerRecord,
    CorruptRecord,
    NameInUse,
    StateStore,
    new_container_id,
    now,
    validate_name,
)
from pydock.core.driver import StorageDriver
from pydock.core.errors import PydockError
from pydock.core.images.store import DEFAULT_IMAGE, DEFAULT_PATH, Image, ImageStore
from pydock.core.plugins import DriverRegistry, availability_of, driver_home
from pydock.core.processes import process_start_time
from pydock.core.runtime import capabilities, security_opts
from pydock.core.runtime.users import validate_user_spec
from pydock.core.runtime.volumes import create_sources, parse_volumes

if TYPE_CHECKING:  # imported for real on the way to a container only
    from pydock.core.runtime import spawn
    from pydock.core.runtime.cgroups import Cgroup
    from pydock.core.runtime.monitor import Session
    from pydock.core.runtime.spawn import Exited

DEFAULT_DRIVER = "overlay"
_ENV_KEY = re.compile(r"[^=\x00]+")
_HOSTNAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
HOSTNAME_MAX = 64
KILL_TIMEOUT = 10.0


class RunOptions(NamedTuple):
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


class ExecOptions(NamedTuple):
    """``pydock exec``'s options, as given on the command line."""

    command: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str | None = None
    user: str | None = None
    interactive: bool = False
    tty: bool = False


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

    def create(self, options: RunOptions) -> tuple[ContainerRecord, StorageDriver, int]:
        """Validate everything, record the container and prepare its storage.

        Returns the record, its storage driver and the descriptor holding its lock (close
        it once the container is running or has failed to start).
        """
        image = self._image(options.image)
        driver = self.driver(options.driver)
        name = options.name if options.name is not None else self.state.generate_name()
        validate_name(name)
        if options.hostname is not None:
            validate_hostname(options.hostname)
        hostname = options.hostname or name
        config = image.run_config
        entrypoint = config.get("Entrypoint") or []
        if entrypoint == [""]:  # docker's reset: how `--entrypoint ""` clears an image's
            entrypoint = []
        argv = list(entrypoint) + list(options.command or config.get("Cmd") or [])
        if not argv:
            raise PydockError("no command given and the image has no default command")
        user = options.user if options.user is not None else str(config.get("User") or "")
        if user:
            validate_user_spec(user)
        workdir = clean_workdir(options.workdir or config.get("WorkingDir") or "/")
        volumes = parse_volumes(options.volumes)
        cap_add, cap_drop = capabilities.effective_add_drop(options.cap_add, options.cap_drop)
        capabilities.resolve(cap_add, cap_drop)  # refuses what pydock cannot give, up front
        security_opts.no_new_privileges(options.security_opt)  # refuses what pydock lacks
        memory = nano_cpus = pids_limit = 0
        if (options.memory, options.cpus, options.pids_limit) != (None, None, None):
            # Only then: a run without limits does no cgroup work, not even this import.
            from pydock.core.runtime import cgroups

            limits = cgroups.parse_limits(options.memory, options.cpus, options.pids_limit)
            memory, nano_cpus, pids_limit = limits.memory, limits.nano_cpus, limits.pids
        record = ContainerRecord(
            id=new_container_id(), name=name, driver=driver.name,
            image=options.image or DEFAULT_IMAGE, image_id=image.id, layers=image.diff_ids,
            command=argv, env=build_env(config.get("Env") or [], options.env, hostname),
            workdir=workdir, hostname=hostname, network=options.network,
            read_only=options.read_only, user=user, volumes=list(options.volumes),
            memory=memory, nano_cpus=nano_cpus, pids_limit=pids_limit, cap_add=cap_add,
            cap_drop=cap_drop, security_opt=list(options.security_opt), created=now())
        try:
            lock = self.state.create(record)
        except NameInUse:
            if options.name is not None:
                raise
            return self.create(options)  # a parallel run drew the same name: draw again
        failpoints.reached("run.record-created")
        try:
            self.images.confirm(record.image_id, record.image)  # `image rm` did not win
            driver.prepare(record.id, self.images.layer_paths(record.layers))
            create_sources(volumes)
            failpoints.reached("run.storage-prepared")
        except BaseException as exc:
            with contextlib.suppress(Exception):
                driver.remove(record.id)
            self.state.delete(name)
            os.close(lock)
            if isinstance(exc, Exception) and not isinstance(exc, PydockError):
                raise PydockError(f"preparing storage ({driver.name}) failed: {exc}") from exc
            raise
        return record, driver, lock

    def run(self, options: RunOptions) -> tuple[str, int, str]:
        """Create a container and start it under its monitor: (name, exit code, error).

        In the foreground, that is once the container has ended; detached, once it runs
        (exit code 0), or has failed to start."""
        from pydock.core.runtime import monitor, spawn

        record, driver, lock = self.create(options)
        cgroup: Cgroup | None = None
        try:
            if record.has_limits:  # otherwise no cgroup work at all
                from pydock.core.runtime import cgroups

                cgroup = cgroups.create(self.root, record.id, cgroups.Limits(
                    record.memory, record.nano_cpus, record.pids_limit))
                failpoints.reached("run.cgroup-created")
            request = monitor.Launch(
                spec=spawn.ProcessSpec(
                    argv=record.command, env=dict(e.split("=", 1) for e in record.env),
                    workdir=record.workdir, hostname=record.hostname, network=record.network,
                    read_only=record.read_only, user=record.user,
                    volumes=parse_volumes(record.volumes),
                    capability_set=capabilities.resolve(record.cap_add, record.cap_drop),
                    no_new_privileges=security_opts.no_new_privileges(record.security_opt)),
                rootfs=str(driver.rootfs_dir(record.id)),
                mounts=driver.mounts(record.id, self.images.layer_paths(record.layers)),
                log_path=str(self.state.log_path(record.name)),
                attach=not options.detach, pty=_open_pty() if options.tty else None,
                cgroup=cgroup)
            hooks = monitor.Hooks(forked=lambda pid: self._record_process(record, pid),
                                  started=lambda _pid: self._record_started(record),
                                  exited=lambda exited: self._record_exited(
                                      record, exited, options.remove))
            with _signals_blocked():
                session = monitor.launch(request, hooks, lock)
                failpoints.reached("run.monitor-forked")
                lock = -1
                previous = _forward_signals(session.monitor_pid, request.pty)
        except BaseException:
            if lock >= 0:
                os.close(lock)
            if cgroup is not None:
                cgroup.close()
            with contextlib.suppress(PydockError, OSError):
                self.remove(record.name, force=True, only_id=record.id)
            raise
        try:
            if cgroup is not None:
                cgroup.close()  # the monitor has its own copy, for the container to join
            if request.pty is not None:
                os.close(request.pty[1])
            exited = self._follow(session, record, options, request.pty)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            session.close()
            if request.pty is not None:
                os.close(request.pty[0])
        if exited is None:  # detached and running
            return record.name, 0, ""
        # Reaped only now: the monitor exits right after its last report.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(session.monitor_pid, 0)
        return record.name, exited.code, exited.error

    def _follow(self, session: Session, record: ContainerRecord, options: RunOptions,
                pty: tuple[int, int] | None) -> Exited | None:
        """Wait for the monitor's reports: None once running if detached, else the exit."""
        from pydock.core.runtime import monitor

        with _raw_terminal(pty is not None and options.interactive):
            while True:
                if pty is not None and not options.detach:
                    from pydock.core.runtime import terminal

                    terminal.forward_input(pty[0], session.status_fd,
                                           0 if options.interactive else None)
                kind, rest = session.next_message()
                if kind == "started":
                    if options.detach:
                        return None
                    continue
                if kind == "exited":
                    return monitor.parse_exit(rest)
                return self._lost_monitor(session, record)

    def _lost_monitor(self, session: Session, ours: ContainerRecord) -> Exited:
        """The monitor died before its last report (it was killed): what the record knows."""
        from pydock.core.runtime import monitor, spawn

        with contextlib.suppress(ChildProcessError):
            os.waitpid(session.monitor_pid, 0)
        with contextlib.suppress(PydockError):
            record = self.state.load(ours.name)
            if record.id == ours.id and record.exit_code is not None:
                return spawn.Exited(record.exit_code, record.error)
        return spawn.Exited(monitor.EXIT_MONITOR_LOST, "the container's monitor died before "
                              "the container ended; see `pydock ps -a`")

    def _record_process(self, record: ContainerRecord, pid: int) -> None:
        # In the monitor, under the lock taken at creation, while the container's process
        # waits to be let go: from here on rm can find it, whatever becomes of the monitor.
        record.pid, record.pid_start = pid, process_start_time(pid)
        record.monitor_pid = os.getpid()
        record.monitor_start = process_start_time(record.monitor_pid)
        # Not fsync'd: this is on the way to every container's start, and after a power
        # cut no container is running whatever the record says (its pid is checked).
        self.state.save(record, durable=False)

    def _record_started(self, record: ContainerRecord) -> None:
        # Once the command is exec'd, still under the lock: rm and prune see the container
        # running from the moment they can see it at all. Not before: `exec` joins the
        # namespaces of a running container's process, which must be the container's own.
        record.status, record.started = RUNNING, now()
        self.state.save(record, durable=False)  # as in _record_process

    def _record_exited(self, record: ContainerRecord, exited: Exited, remove: bool) -> None:
        if remove:
            with contextlib.suppress(PydockError, OSError):
                self.remove(record.name, force=True, only_id=record.id)
            return
        self._update(record, status=EXITED, pid=0, exit_code=exited.code,
                     error=exited.error, finished=now(), oom_killed=exited.oom_killed)

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
            from pydock.core.images.default import build_default_image

            return build_default_image(self.images)

    # -- rm --------------------------------------------------------------

    def remove(self, name: str, force: bool, only_id: str | None = None) -> None:
        """Remove a container: kill it first if ``force``, then its storage, then its record.

        With ``only_id``, a container that has taken the name since is left alone.
        A corrupt record is removed only with ``force``, with what can be found of its
        container (:func:`pydock.core.containers.cleanup.remove_remains`).
        """
        with self.state.locked(name):
            try:
                record = self.state.load(name)
            except CorruptRecord:
                if not force or only_id is not None:
                    raise
                from pydock.core.containers import cleanup

                cleanup.remove_remains(self, name, KILL_TIMEOUT)
                return
            if only_id is not None and record.id != only_id:
                return
            if is_running(record) and not force:
                raise PydockError(f"container {name} is running: stop it first or use rm -f")
            if process_alive(record):  # running, or on its way to (its monitor crashed)
                _kill(record)
            failpoints.reached("rm.killed")
            if record.has_limits:
                from pydock.core.runtime import cgroups

                cgroups.remove(self.root, record.id)
            failpoints.reached("rm.cgroup-removed")
            self.stored_driver(record.driver).remove(record.id)
            failpoints.reached("rm.storage-removed")
            self.state.delete(name)

    def stored_driver(self, name: str) -> StorageDriver:
        """Driver ``name``, to handle what it stored: unlike :meth:`driver`, also where it
        could no longer create anything."""
        return self.registry.driver_class(name)(driver_home(self.root, name))

    # -- exec --------------------------------------------------------------

    def exec(self, name: str, options: ExecOptions) -> tuple[int, str]:
        """Run a command in a running container, in the foreground: (exit code, error)."""
        from pydock.core import processes
        from pydock.core.runtime import spawn

        record = self.state.load(name)
        if not options.command:
            raise PydockError("no command given")
        user = options.user if options.user is not None else record.user
        if user:
            validate_user_spec(user)
        workdir = clean_workdir(options.workdir or record.workdir)
        env = build_env(record.env, options.env, record.hostname)
        spec = spawn.ProcessSpec(
            argv=list(options.command), env=dict(e.split("=", 1) for e in env), workdir=workdir,
            hostname=record.hostname, network=record.network, read_only=record.read_only,
            user=user,
            # As in docker: what the container's processes may do, exec'd ones may do.
            capability_set=capabilities.resolve(record.cap_add, record.cap_drop),
            no_new_privileges=security_opts.no_new_privileges(record.security_opt))
        with processes.opened(record.pid, record.pid_start) as container:
            if record.status != RUNNING or container is None:
                raise PydockError(f"container {name} is not running")
            cgroup = None
            if record.has_limits:
                from pydock.core.runtime import cgroups

                cgroup = cgroups.attach(self.root, record.id)
            pty = _open_pty() if options.tty else None
            try:
                return self._exec_in(container, spec, options, pty, cgroup)
            finally:
                if pty is not None:
                    os.close(pty[0])
                if cgroup is not None:
                    cgroup.close()

    def _exec_in(self, container: int, spec: spawn.ProcessSpec, options: ExecOptions,
                 pty: tuple[int, int] | None, cgroup: Cgroup | None) -> tuple[int, str]:
        from pydock.core.runtime import spawn, terminal

        stdio = (spawn.Stdio(pty[1], pty[1], pty[1], tty=True) if pty is not None
                 else spawn.Stdio(0, 1, 2))
        with _signals_blocked():
            started = spawn.start_in(container, spec, stdio,
                                       cgroup.join if cgroup is not None else None)
            # Our own child: its pid cannot be reused before we reap it.
            previous = _forward_signals(started.pid, pty)
        try:
            if pty is not None:
                os.close(pty[1])
            failed = spawn.exec_report(started)
            if failed is None and pty is not None:
                process = os.pidfd_open(started.pid)
                with _raw_terminal(options.interactive):
                    terminal.relay(pty[0], 0 if options.interactive else None, process)
                os.close(process)
            _, status = os.waitpid(started.pid, 0)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        exited = failed or spawn.Exited(spawn.exit_status(status))
        return exited.code, exited.error

    # -- signals and logs ----------------------------------------------------

    def kill(self, name: str, signum: int) -> None:
        """Send ``signum`` to the container's first process."""
        from pydock.core import processes

        record = self.state.load(name)
        with processes.opened(record.pid, record.pid_start) as pidfd:
            if not is_running(record) or pidfd is None:
                raise PydockError(f"container {name} is not running")
            processes.send(pidfd, signum)

    def stop(self, name: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the container's
        end is recorded (or, with --rm, once it is removed). Stopped already: nothing."""
        from pydock.core import processes

        record = self.state.load(name)
        with processes.opened(record.pid, record.pid_start) as pidfd:
            if is_running(record) and pidfd is not None:
                processes.send(pidfd, signal.SIGTERM)
                if not processes.wait_for_exit(pidfd, grace):
                    _kill(record)
        # The monitor still drains the output and records the exit code.
        with processes.opened(record.monitor_pid, record.monitor_start) as monitor:
            if monitor is not None:
                processes.wait_for_exit(monitor, KILL_TIMEOUT)

    def log_frames(self, name: str, follow: bool) -> Iterator[tuple[int, bytes]]:
        """The container's output so far as (stream, data); with ``follow``, until it ends."""
        from pydock.core.runtime.logs import read_frames

        record = self.state.load(name)
        path = self.state.log_path(name)
        if not path.exists():  # never started
            return iter(())

        return read_frames(str(path), follow, lambda: monitor_alive(record))

    def prune(self) -> list[str]:
        """Remove every container that is not running (but no corrupt record: it may be),
        then whatever crashes left behind with no container to remove it with."""
        removed = []
        for name in self.state.names():
            with contextlib.suppress(PydockError):
                if not is_running(self.state.load(name)):
                    self.remove(name, force=False)
                    removed.append(name)
        from pydock.core.containers import cleanup

        cleanup.sweep(self)
        return removed

    def users_of(self, image: Image) -> list[str]:
        """Names of the containers created from ``image``, counting a corrupt record
        unless it still shows another image: its layers must not go from under it."""
        users = []
        for name in self.state.names():
            try:
                image_id = self.state.load(name).image_id
            except CorruptRecord:
                image_id = self.state.salvage(name).image_id or image.id
            except PydockError:  # removed meanwhile
                continue
            if image_id == image.id:
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
            "Mounts": [volume.describe() for volume in parse_volumes(record.volumes)],
            "HostConfig": {
                "NetworkMode": record.network,
                "ReadonlyRootfs": record.read_only,
                "Binds": record.volumes or None,  # docker's null when there are none
                "Memory": record.memory,
                "NanoCpus": record.nano_cpus,
                "PidsLimit": record.pids_limit or None,  # docker shows no limit as null
                "CapAdd": record.cap_add or None,
                "CapDrop": record.cap_drop or None,
                "SecurityOpt": record.security_opt or None,
            },
        }


def _raw_terminal(wanted: bool) -> contextlib.AbstractContextManager[None]:
    """The user's terminal in raw mode while typed input goes to a container's terminal."""
    if not wanted:
        return contextlib.nullcontext()
    from pydock.core.runtime import terminal

    return terminal.raw_mode(0)


def _open_pty() -> tuple[int, int]:
    from pydock.core.runtime import terminal

    return terminal.open_pty()


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold the signals meant for the container while its monitor is forked: they are
    delivered once forwarding is in place, never to a half-made monitor."""
    from pydock.core.runtime.spawn import FORWARDED_SIGNALS

    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)


def _forward_signals(monitor_pid: int,
                     pty: tuple[int, int] | None) -> dict[int, signal._HANDLER]:
    """Signals sent to the CLI go to the monitor, which passes them to the container.
    With a terminal, SIGWINCH resizes the container's terminal instead."""
    from pydock.core.runtime.spawn import FORWARDED_SIGNALS

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(monitor_pid, signum)

    def resize(_signum: int, _frame: object) -> None:
        from pydock.core.runtime import terminal

        if pty is not None:
            terminal.copy_window_size(pty[0])

    previous: dict[int, signal._HANDLER] = {}
    for signum in FORWARDED_SIGNALS:
        handler = resize if signum == signal.SIGWINCH and pty is not None else forward
        previous[signum] = signal.signal(signum, handler)
    return previous


def process_alive(record: ContainerRecord) -> bool:
    """Whether the recorded process is alive: the pid *and* its start time must match."""
    return record.pid_start != 0 and process_start_time(record.pid) == record.pid_start


def monitor_alive(record: ContainerRecord) -> bool:
    """Whether the monitor that records the container's end is alive (pid and start time)."""
    return record.monitor_pid > 0 and process_start_time(record.monitor_pid) == \
        record.monitor_start


def is_running(record: ContainerRecord) -> bool:
    return live_status(record) == RUNNING


def live_status(record: ContainerRecord) -> str:
    """The recorded status, corrected by what the kernel says about the recorded process:
    after a crash (of the CLI, the monitor, the host) the record says what was last known.
    """
    if record.pid_start == 0:  # no process was ever recorded
        return EXITED if record.status == RUNNING else record.status
    if record.status == EXITED or not process_alive(record):
        # Its process ended and no one recorded how: the monitor died.
        return EXITED
    if record.status == CREATED and monitor_alive(record):
        return CREATED  # being started: its monitor records it running once it execs
    # Recorded running, or its monitor died after letting the process run its command.
    return RUNNING


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


def clean_workdir(path: str) -> str:
    """An absolute working directory, cleaned lexically as docker's filepath.Clean does:
    ``/a/../b`` is ``/b`` (no ``/a`` is created on the way) and ``..`` stops at ``/``."""
    if not path.startswith("/"):
        raise PydockError(f"working directory {path!r} must be an absolute path")
    return "/" + os.path.normpath(path).lstrip("/")


def validate_hostname(hostname: str) -> None:
    if len(hostname) > HOSTNAME_MAX or not _HOSTNAME.fullmatch(hostname):
        raise PydockError(f"invalid hostname {hostname!r}: expected {_HOSTNAME.pattern}, "
                          f"at most {HOSTNAME_MAX} characters")


def _kill(record: ContainerRecord) -> None:
    from pydock.core import processes

    if not processes.kill(record.pid, record.pid_start, KILL_TIMEOUT):
        raise PydockError(f"container {record.name} (pid {record.pid}) did not die "
                          f"within {KILL_TIMEOUT:.0f}s of SIGKILL")

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
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from pydock.core import failpoints
from pydock.core.containers import attach, spec
from pydock.core.containers.liveness import (
    KILL_TIMEOUT,
    is_running,
    kill_process,
    monitor_alive,
    process_alive,
)
from pydock.core.containers.spec import BRIDGE, ExecOptions, RunOptions
from pydock.core.containers.state import (
    EXITED,
    RUNNING,
    ContainerRecord,
    CorruptRecord,
    NameInUse,
    new_container_id,
    now,
    validate_name,
)
from pydock.core.containers.store import ContainerStore
from pydock.core.driver import StorageDriver
from pydock.core.errors import PydockError
from pydock.core.images.store import DEFAULT_IMAGE, Image
from pydock.core.processes import process_start_time
from pydock.core.runtime import etcfiles
from pydock.core.runtime.volumes import Volume, create_sources
from pydock.core.storage_root import NETWORK, SECCOMP_CACHE

# Overrides the storage root's default network (a test suite's runs on "none", say).
DEFAULT_NETWORK_VARIABLE = "PYDOCK_DEFAULT_NETWORK"

if TYPE_CHECKING:  # imported for real on the way to a container only
    from pydock.core.containers.network import Lease
    from pydock.core.runtime.cgroups import Cgroup
    from pydock.core.runtime.logs import Entry
    from pydock.core.runtime.monitor import Session
    from pydock.core.runtime.spawn import Exited, ProcessSpec


class Attach(NamedTuple):
    """How a container is started: in the background or with the CLI attached."""

    detach: bool
    interactive: bool = False  # the CLI's stdin goes to the container's
    tty: bool = False  # a pseudo-terminal (the spec's process.terminal)
    remove: bool = False  # --rm: removed once it exits


class Containers(ContainerStore):
    """The container commands of one storage root."""

    # -- run -------------------------------------------------------------

    def create(self, options: RunOptions) -> tuple[ContainerRecord, StorageDriver, int]:
        """Validate everything, record the container and prepare its storage.

        Returns the record, its storage driver and the descriptor holding its lock (close
        it once the container is running or has failed to start).
        """
        if options.network is None:
            options = options._replace(network=self._default_network())
        if options.network == BRIDGE:
            from pydock.core.containers import network

            network.check_host()
        image = self._image(options.image)
        driver = self.driver(options.driver)
        name = options.name if options.name is not None else self.state.generate_name()
        validate_name(name)
        container_id = new_container_id()
        record = ContainerRecord(
            id=container_id, name=name, driver=driver.name,
            image=options.image or DEFAULT_IMAGE, image_id=image.id, layers=image.diff_ids,
            spec=spec.build(options, image.run_config, name,
                            str(driver.rootfs_dir(container_id))),
            created=now())
        try:
            lock = self.state.create(record)
        except NameInUse:
            if options.name is not None:
                raise
            return self.create(options)  # a parallel run drew the same name: draw again
        failpoints.reached("run.record-created")
        try:
            address = ""
            if options.network == BRIDGE:
                address = self._lease(record).address
            # In the record's directory, which rm deletes: nothing else to clean up.
            etcfiles.write_files(self.state.path(name), spec.etc_config(record.spec, address))
            self.images.confirm(record.image_id, record.image)  # `image rm` did not win
            driver.prepare(record.id, self.images.layer_paths(record.layers))
            create_sources([Volume.from_mount(mount) for mount in record.spec["mounts"]
                            if mount.get("type", "bind") == "bind"])
            failpoints.reached("run.storage-prepared")
        except BaseException as exc:
            with contextlib.suppress(Exception):
                driver.remove(record.id)
            if options.network == BRIDGE:
                with contextlib.suppress(Exception):
                    self._release_network(record)
            self.state.delete(name)
            os.close(lock)
            if isinstance(exc, Exception) and not isinstance(exc, PydockError):
                raise PydockError(f"preparing storage ({driver.name}) failed: {exc}") from exc
            raise
        return record, driver, lock

    def _default_network(self) -> str:
        """``PYDOCK_DEFAULT_NETWORK``, else the storage root's ``default`` network
        (``network/config.json``; docker's bridge when it says nothing): one small read,
        nothing imported."""
        import json

        if os.environ.get(DEFAULT_NETWORK_VARIABLE):
            return os.environ[DEFAULT_NETWORK_VARIABLE]
        try:
            given = json.loads((self.root / NETWORK / "config.json").read_bytes())
            default = given.get("default", BRIDGE) if isinstance(given, dict) else None
            if isinstance(default, str):
                return default
        except FileNotFoundError:
            return BRIDGE
        except (OSError, ValueError):
            pass
        from pydock.core.containers import network

        return network.read_config(self.root).default  # which says what is wrong

    def _lease(self, record: ContainerRecord) -> Lease:
        """An address and the ports the record asks to publish (at `run`, and again at
        `start`: its address and ports go when it stops, as docker's do)."""
        from pydock.core.containers import network

        specs, publish_all, exposed = spec.publish_request(record.spec)
        granted = network.lease(self.root, network.read_config(self.root), record.id,
                                network.parse_publish(specs, publish_all, exposed))
        failpoints.reached("net.leased")
        return granted

    def _connect(self, record: ContainerRecord) -> int:
        """On the bridge: the container's network namespace, connected (-1 otherwise)."""
        if spec.network_mode(record.spec) != BRIDGE:
            return -1
        from pydock.core.containers import network

        granted = network.lease_of(self.root, record.id)
        if granted is None:  # started again (`start`, `restart`): /etc/hosts says anew
            granted = self._lease(record)
            etcfiles.write_files(self.state.path(record.name),
                                 spec.etc_config(record.spec, granted.address))
        return network.connect(self.root, network.read_config(self.root), granted)

    def _release_network(self, record: ContainerRecord) -> None:
        if spec.network_mode(record.spec) == BRIDGE:
            from pydock.core.containers import network

            network.release(self.root, record.id)

    def run(self, options: RunOptions) -> tuple[str, int, str]:
        """Create a container and start it under its monitor: (id, exit code, error).

        In the foreground, that is once the container has ended; detached, once it runs
        (exit code 0), or has failed to start."""
        record, driver, lock = self.create(options)
        return self.launch(record, driver, lock, Attach(
            detach=options.detach, interactive=options.interactive, tty=options.tty,
            remove=options.remove), fresh=True)

    def launch(self, record: ContainerRecord, driver: StorageDriver, lock: int,
               how: Attach, fresh: bool) -> tuple[str, int, str]:
        """Start the container of ``record``, whose storage is prepared, under a monitor of
        its own; ``lock`` holds its record's lock (the monitor takes it over). As
        :meth:`run`. ``fresh``: the container was created for this (``run``), and goes
        again if it cannot start; otherwise (``start``) it stays, as it was."""
        from pydock.core.runtime import cgroups, devices, monitor

        cgroup: Cgroup | None = None
        netns = -1
        try:
            # Every container, limits or not: its cgroup is the root of its cgroup
            # namespace, and holds the device allowlist (pydock.core.runtime.cgroups).
            resources = record.spec["linux"]["resources"]
            cgroup = cgroups.create(self.root, record.id, cgroups.Limits.from_resources(
                resources), devices.cgroup_rules(resources.get("devices", [])))
            failpoints.reached("run.cgroup-created")
            netns = self._connect(record)
            process = self._process(record.spec)
            process = process._replace(netns_fd=netns, root=process.root._replace(
                etc_files=etcfiles.mounts(self.state.path(record.name))))
            request = monitor.Launch(
                spec=process, rootfs=record.spec["root"]["path"],
                mounts=driver.mounts(record.id, self.images.layer_paths(record.layers)),
                log_path=str(self.state.log_path(record.name)),
                attach=not how.detach, tty=how.tty,
                window_size=attach.window_size() if how.tty else b"",
                cgroup=cgroup, interactive=how.interactive)
            callbacks = monitor.Callbacks(
                forked=lambda pid: self._record_process(record, pid),
                started=lambda _pid: self._record_started(record),
                exited=lambda exited: self._record_exited(record, exited, how.remove),
                again=lambda exited, restarts: self._again(record, exited, restarts))
            with attach.signals_blocked():
                session = monitor.launch(request, callbacks, lock)
                failpoints.reached("run.monitor-forked")
                lock = -1
                # The terminal's master, once the container has sent it (-t).
                master: list[int] | None = [] if how.tty else None
                previous = attach.forward_signals(session.monitor_pid, master)
        except BaseException:
            if lock >= 0:
                os.close(lock)
            if cgroup is not None:
                cgroup.close()
                if not fresh:
                    with contextlib.suppress(PydockError, OSError):
                        cgroups.remove(self.root, record.id)
            if netns >= 0:
                os.close(netns)
            if fresh:
                with contextlib.suppress(PydockError, OSError):
                    self.remove(record.name, force=True, only_id=record.id)
            else:
                with contextlib.suppress(PydockError, OSError):
                    self._release_network(record)
            raise
        try:
            if cgroup is not None:
                cgroup.close()  # the monitor has its own copy, for the container to join
            if netns >= 0:
                os.close(netns)  # the monitor's copy is the container's
            exited = attach.follow(session, master, how.interactive, how.detach,
                                   lambda: self._lost_monitor(session, record))
        finally:
            attach.restore_signals(previous)
            session.close()
            for fd in master or []:
                os.close(fd)
        if exited is None:  # detached and running
            return record.id, 0, ""
        # Reaped only now: the monitor exits right after its last report.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(session.monitor_pid, 0)
        return record.id, exited.code, exited.error

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
        # A container started again forgets how it ended before.
        record.exit_code, record.error, record.finished = None, "", ""
        record.oom_killed = False
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
        # As docker: a container that has stopped holds no address and publishes no port.
        with contextlib.suppress(PydockError, OSError):
            self._release_network(record)
        self._update(record, status=EXITED, pid=0, exit_code=exited.code,
                     error=exited.error, finished=now(), oom_killed=exited.oom_killed)

    def _again(self, record: ContainerRecord, exited: Exited,
               restarts: int) -> tuple[int, Cgroup | None] | None:
        """The restart policy, in the monitor after the container's process ended: None to
        let the container end; else the record's lock, held, and a new cgroup to start it
        again with. Not if ``stop`` or ``rm`` got to it first: they mark or remove the
        record under its lock, which is taken here before anything starts again."""
        policy = spec.restart_policy(record.spec)
        name, maximum = policy["Name"], policy["MaximumRetryCount"]
        if name == "no" or (name == "on-failure" and (
                exited.code == 0 or (maximum and restarts >= maximum))):
            return None
        # Docker's back-off: 100 ms, doubled with each restart, at most a minute.
        time.sleep(min(0.1 * 2 ** min(restarts, 10), 60.0))
        try:
            lock = self.state.lock(record.name)
        except PydockError:  # removed meanwhile
            return None
        try:
            current = self.state.load(record.name)
            if current.id != record.id or self.state.stop_mark(record.name).exists():
                os.close(lock)
                return None
            record.exit_code, record.error, record.finished = exited.code, exited.error, now()
            record.restart_count = restarts + 1
            record.status, record.pid = EXITED, 0
            self.state.save(record)
            from pydock.core.runtime import cgroups, devices

            resources = record.spec["linux"]["resources"]
            cgroup = cgroups.create(self.root, record.id, cgroups.Limits.from_resources(
                resources), devices.cgroup_rules(resources.get("devices", [])))
        except BaseException:
            os.close(lock)
            raise
        return lock, cgroup

    def mark_stopped(self, name: str) -> None:
        """Its restart policy no longer applies to container ``name`` (``stop``); see
        :meth:`StateStore.stop_mark`."""
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile
            os.close(os.open(self.state.stop_mark(name),
                             os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))

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
        if force:
            with contextlib.suppress(PydockError):  # not a name, or gone: nothing to mark
                self.mark_stopped(name)  # no restart policy may bring it back meanwhile
            self._kill_before_locking(name, only_id)
        with self.state.locked(name):
            try:
                record = self.state.load(name)
            except CorruptRecord:
                if not force or only_id is not None:
                    raise
                from pydock.core.containers import cleanup

                cleanup.remove_remains(self, name)
                return
            if only_id is not None and record.id != only_id:
                return
            if is_running(record) and not force:
                raise PydockError(f"container {name} is running: stop it first or use rm -f")
            if process_alive(record):  # running, or on its way to (its monitor crashed)
                kill_process(record.name, record.pid, record.pid_start)
            failpoints.reached("rm.killed")
            from pydock.core.runtime import cgroups

            cgroups.remove(self.root, record.id)
            failpoints.reached("rm.cgroup-removed")
            self._release_network(record)
            failpoints.reached("rm.network-released")
            self.stored_driver(record.driver).remove(record.id)
            failpoints.reached("rm.storage-removed")
            self.state.delete(name)

    def _kill_before_locking(self, name: str, only_id: str | None) -> None:
        """``rm -f``'s kill, done before it waits for the record's lock.

        The lock may be held by a command that is itself waiting on the container: the
        monitor holds it from creation until the command is exec'd, so a container whose
        setup hangs (on a FIFO, say, planted in its root) would otherwise keep ``rm -f``
        waiting for as long as it hangs. Its death is what lets the holder go on, and then
        let go. Killing without the lock is safe: the pid counts only with its recorded
        start time, and what is killed is the very container ``rm -f`` removes. The record
        may be missing or corrupt here: the locked removal that follows deals with that.
        """
        with contextlib.suppress(PydockError):
            record = self.state.load(name)
            if (only_id is None or record.id == only_id) and process_alive(record):
                kill_process(record.name, record.pid, record.pid_start)

    # -- exec --------------------------------------------------------------

    def _process(self, container_spec: dict[str, Any]) -> ProcessSpec:
        """What the runtime starts for ``container_spec``, with the storage root's cache of
        compiled seccomp filters."""
        from pydock.core.runtime import spawn

        return spawn.process_spec(container_spec)._replace(
            seccomp_cache=str(self.root / SECCOMP_CACHE))

    def exec(self, name: str, options: ExecOptions) -> tuple[int, str]:
        """Run a command in a running container, in the foreground: (exit code, error)."""
        from pydock.core import processes
        from pydock.core.runtime import cgroups

        record = self.state.load(name)
        process = self._process(spec.exec_spec(record.spec, options))
        with processes.opened(record.pid, record.pid_start) as container:
            if record.status != RUNNING or container is None:
                raise PydockError(f"container {name} is not running")
            # The container's cgroups, every one: the exec'd process then enters the
            # container's cgroup namespace at its root, as the container's own do.
            cgroup = cgroups.attach(self.root, record.id)
            try:
                exited = attach.exec_in(container, process, options.tty, options.interactive,
                                        cgroup)
            finally:
                cgroup.close()
        return exited.code, exited.error

    # -- signals and logs ----------------------------------------------------

    def kill(self, name: str, signum: int) -> None:
        """Send ``signum`` to the container's first process, running or still being set
        up (its setup may hang on what its root holds; a kill must end it all the same)."""
        from pydock.core import processes

        record = self.state.load(name)
        with processes.opened(record.pid, record.pid_start) as pidfd:
            if pidfd is None:
                raise PydockError(f"container {name} is not running")
            if signum in (signal.SIGKILL, signal.SIGTERM) and spec.restart_policy(
                    record.spec)["Name"] != "no":
                self.mark_stopped(name)  # as docker: a stop, for good
            processes.send(pidfd, signum)

    def stop(self, name: str, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the container's
        end is recorded (or, with --rm, once it is removed). Stopped already: nothing.

        A container still being set up is stopped too: its setup may hang on what its root
        holds, and its recorded process (checked by start time) is alive all the same.
        """
        from pydock.core import processes

        record = self.state.load(name)
        if spec.restart_policy(record.spec)["Name"] != "no":
            self.mark_stopped(name)  # before the signal: the monitor must not restart it
        record = self.state.load(name)  # its pid may have changed with a restart
        with processes.opened(record.pid, record.pid_start) as pidfd:
            if pidfd is not None:
                processes.send(pidfd, signal.SIGTERM)
                if not processes.wait_for_exit(pidfd, grace):
                    kill_process(record.name, record.pid, record.pid_start)
        # The monitor still drains the output and records the exit code.
        with processes.opened(record.monitor_pid, record.monitor_start) as monitor:
            if monitor is not None:
                processes.wait_for_exit(monitor, KILL_TIMEOUT)

    def log_entries(self, name: str, follow: bool) -> Iterator[Entry]:
        """The container's output so far, chunk by chunk as its monitor read it; with
        ``follow``, until it ends."""
        from pydock.core.runtime.logs import read_entries

        record = self.state.load(name)
        path = self.state.log_path(name)
        if not path.exists():  # never started
            return iter(())

        return read_entries(str(path), follow, lambda: monitor_alive(record))

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
        from pydock.core.containers.describe import describe

        return describe(self, self.state.load(name))

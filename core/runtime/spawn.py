"""Starting a container's process in fresh namespaces, and waiting for it.

The order matters and is the one runc uses:

1. The CLI unshares only its PID namespace: that applies to the children it
   forks from then on, not to itself, so the next fork becomes PID 1 of a new
   namespace with no extra process in between.
2. The child joins the container's cgroup, then unshares mount, UTS, IPC, cgroup
   and (unless ``--network host``) network namespaces: the cgroup namespace is
   rooted where the process is when it unshares. unshare(2) refuses in a
   multi-threaded process; the child of a fork has exactly one thread, whatever
   the parent had.
3. The child leaves the caller's keyring and fds behind (:mod:`pydock.core.runtime.entry`),
   sets up the root (:mod:`pydock.core.runtime.rootfs`), enters the working directory
   (checked to be inside the root) and execs the command, which thereby runs as PID 1. It
   does so through pydock's exec helper, from a sealed memfd
   (:mod:`pydock.core.runtime.sealed_exec`): never from its own binary, the host's Python
   (CVE-2019-5736).

The parent never shares the container's mount namespace (pivot_root moves the
root of every process in the namespace it runs in). The parent is the container's
monitor (:mod:`pydock.core.runtime.monitor`), which owns the container's stdio and its signals.

Errors in the child are reported to the parent through a close-on-exec pipe:
a successful exec closes it unread; a failure writes ``CODE MESSAGE`` to it (or, from the
exec helper, ``errno N``).
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, NoReturn

from pydock.core import failpoints
from pydock.core.driver import Mount
from pydock.core.errors import EXIT_PYDOCK_ERROR
from pydock.core.runtime import capabilities, entry, sealed_exec, seccomp, users
from pydock.core.runtime.devices import Device
from pydock.core.runtime.rootfs import RootSpec, prepare_root, remount_root_read_only
from pydock.core.runtime.volumes import Volume
from pydock.core.syscalls import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    prctl,
    set_link_up,
    sethostname,
    setns,
    unshare,
)

# Signals a user sends to the CLI or the monitor with kill(1) are meant for the container.
FORWARDED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT,
                               signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH})


class ProcessSpec(NamedTuple):
    """What the container's first process is: command, environment and surroundings.

    The runtime's typed reading of a container spec (:func:`process_spec`); nothing else
    tells the runtime what to run.
    """

    argv: list[str]
    env: dict[str, str]
    workdir: str
    hostname: str
    network: str  # "none": a network namespace of its own (netns_fd's, or a new one with
    # only lo); "host": the host's
    read_only: bool
    user: str = ""  # NAME|UID[:GROUP|GID], resolved in the image; "" is root
    root: RootSpec = RootSpec()
    # What root in the container may do (names without CAP_), and whether any exec may
    # grant more (setuid bits, file capabilities); exec'd processes get the same.
    capability_set: tuple[str, ...] = capabilities.DOCKER_DEFAULT
    no_new_privileges: bool = False
    # The OCI spec's linux.seccomp, resolved for this container (None: unconfined), and
    # where the programs libseccomp compiles are kept ("": nowhere).
    seccomp: dict[str, Any] | None = None
    seccomp_cache: str = ""
    # On the bridge: the network namespace made and connected for the container
    # (pydock.core.runtime.bridge), which its first process enters instead of making one.
    netns_fd: int = -1


def process_spec(spec: dict[str, Any]) -> ProcessSpec:
    """Read a container spec (:mod:`pydock.core.containers.spec`, shaped like the OCI
    runtime spec's config.json) as the runtime needs it."""
    process, linux = spec["process"], spec["linux"]
    namespaces = {namespace["type"] for namespace in linux["namespaces"]}
    return ProcessSpec(
        argv=process["args"], env=dict(item.split("=", 1) for item in process["env"]),
        workdir=process["cwd"], hostname=spec["hostname"],
        network="none" if "network" in namespaces else "host",
        read_only=spec["root"]["readonly"], user=process["user"]["username"],
        root=RootSpec(
            volumes=tuple(Volume.from_mount(mount) for mount in spec["mounts"]
                          if mount.get("type", "bind") in ("bind", "init")),
            tmpfs=_tmpfs_of(spec["mounts"]),
            devices=tuple(Device.from_spec(device) for device in linux["devices"]),
            masked_paths=tuple(path.lstrip("/") for path in linux["maskedPaths"]),
            read_only_paths=tuple(path.lstrip("/") for path in linux["readonlyPaths"])),
        capability_set=tuple(name.removeprefix("CAP_")
                             for name in process["capabilities"]["bounding"]),
        no_new_privileges=process["noNewPrivileges"], seccomp=linux.get("seccomp"))


def _tmpfs_of(mounts: list[dict[str, Any]]) -> tuple[Any, ...]:
    """The ``--tmpfs`` mounts, and their module imported only when there are any."""
    if all(mount.get("type", "bind") in ("bind", "init") for mount in mounts):
        return ()
    from pydock.core.runtime.tmpfs import Tmpfs

    return tuple(Tmpfs.from_mount(mount) for mount in mounts if mount.get("type") == "tmpfs")


class Stdio(NamedTuple):
    """The descriptors that become the container's fds 0, 1 and 2.

    With ``tty``, they are all the slave side of a pseudo-terminal, which the container
    takes as its controlling terminal.
    """

    stdin: int
    stdout: int
    stderr: int
    tty: bool = False
    # -t for run: a socket on which the container's first process sends back the master
    # of a pseudo-terminal it opens in its own devpts once its root is set up (see
    # pydock.core.runtime.terminal.container_terminal); stdin, stdout and stderr are
    # placeholders until then. The window size to give it (TIOCGWINSZ's bytes) comes along.
    pty_socket: int = -1
    window_size: bytes = b""


class Started(NamedTuple):
    pid: int
    error_fd: int
    command: str  # argv[0], for the message if its exec fails


class Exited(NamedTuple):
    code: int
    error: str = ""
    oom_killed: bool = False  # by the kernel, at its cgroup's memory limit


def start(spec: ProcessSpec, rootfs: str, mounts: Sequence[Mount], stdio: Stdio,
          join_cgroup: Callable[[], None] | None = None) -> Started:
    """Fork the container's first process; it sets up its root and execs ``spec.argv``.

    ``join_cgroup`` (:meth:`pydock.core.runtime.cgroups.Cgroup.join`) is the child's first step.
    The caller blocks :data:`FORWARDED_SIGNALS` around this call and installs its
    forwarding once the pid is known: the child keeps them blocked until its own handlers
    are in place, so a signal sent at any moment reaches the container once, never the
    parent's code: before exec it ends the setup, after it the command has it.
    """
    return _fork_in_pid_namespace(
        lambda: unshare(CLONE_NEWPID),
        lambda error_fd: _child(spec, rootfs, mounts, stdio, error_fd, join_cgroup),
        spec.argv[0])


def start_in(container: int, spec: ProcessSpec, stdio: Stdio,
             join_cgroup: Callable[[], None] | None = None) -> Started:
    """Fork a process into the running container whose first process is the pidfd
    ``container``, joining all its namespaces; it execs ``spec.argv`` there.

    Same signal contract as :func:`start`; ``spec``'s hostname, network and read-only
    setting are the container's already and are not applied again.
    """
    return _fork_in_pid_namespace(
        lambda: setns(container, CLONE_NEWPID),
        lambda error_fd: _joining_child(container, spec, stdio, error_fd, join_cgroup),
        spec.argv[0])


def _fork_in_pid_namespace(enter: Callable[[], None],
                           child: Callable[[int], NoReturn], command: str) -> Started:
    """Fork ``child`` (given the write end of the error pipe) as a process of the PID
    namespace that ``enter`` makes this process's "pid_for_children".

    The caller goes back to its own PID namespace right after the fork: once the
    container's PID 1 exits, a process left with that namespace for its children could not
    fork again (ENOMEM), and --rm cleanup or a driver running a tool would fail.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            child(write_end)
        setns(own_pid_namespace, CLONE_NEWPID)
    finally:
        os.close(own_pid_namespace)
    os.close(write_end)
    return Started(pid, read_end, command)


def exec_report(started: Started) -> Exited | None:
    """Block until the container's command is exec'd (None) or its setup failed (why)."""
    with os.fdopen(started.error_fd, "rb") as pipe:
        report = pipe.read().decode(errors="replace")
    if not report:
        return None
    helper_errno = sealed_exec.helper_errno(report)
    if helper_errno is not None:
        failed = sealed_exec.exec_error(started.command, helper_errno)
        return Exited(failed.code, str(failed))
    reported_code, _, message = report.partition(" ")
    return Exited(int(reported_code), message)


def exit_status(status: int) -> int:
    """Docker's exit code for a wait status: the process's own code, or 128+N if killed."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _child(spec: ProcessSpec, rootfs: str, mounts: Sequence[Mount], stdio: Stdio,
           error_fd: int, join_cgroup: Callable[[], None] | None) -> NoReturn:
    """The container's first process, from fork to exec. Never returns: whatever happens,
    it must not fall back into the monitor's code (which would clean up, exit twice)."""
    try:
        helper_fd, load_seccomp = _begin_child(spec, stdio, join_cgroup)
        env = _set_up(spec, rootfs, mounts, (error_fd, helper_fd), load_seccomp, stdio)
        _exec(spec.argv, env, error_fd, helper_fd)
    except BaseException as exc:
        _fail(error_fd, EXIT_PYDOCK_ERROR, f"container setup failed: {_reason(exc)}")
    finally:
        os._exit(EXIT_PYDOCK_ERROR)


def _begin_child(spec: ProcessSpec, stdio: Stdio, join_cgroup: Callable[[], None] | None
                 ) -> tuple[int, Callable[[], None]]:
    """The first steps of a forked child, in the container or joining one; returns the
    sealed exec helper it is to exec the command through and what loads its seccomp
    filter, both made while the host's files (the helper, libseccomp, the filter cache)
    are still its own."""
    # First of all, so that the limits cover all the process does and forks.
    if join_cgroup is not None:
        join_cgroup()
    # The parent's Python handlers must not run here. Until exec, a signal meant for the
    # container ends the setup at once (a stop before the start ends the container), not
    # once the setup is done: that may never come (a FIFO at /etc/passwd blocked it for
    # good, deaf to `stop` and ^C); and the default action would not do, since PID 1 of a
    # PID namespace ignores the signals it has no handler for. exec drops the handlers.
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGWINCH else _end_setup)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    _take_stdio(stdio)
    return sealed_exec.sealed_helper(), seccomp.prepare(spec.seccomp, spec.seccomp_cache)


def _end_setup(signum: int, _frame: object) -> None:
    # The status of a command killed by it, as exit_status reports one: 128+N.
    os._exit(128 + signum)


def _joining_child(container: int, spec: ProcessSpec, stdio: Stdio, error_fd: int,
                   join_cgroup: Callable[[], None] | None) -> NoReturn:
    try:
        helper_fd, load_seccomp = _begin_child(spec, stdio, join_cgroup)
        # Not dumpable before it joins: this process still holds the host's files and
        # memory, and the container's root may otherwise ptrace it or open its /proc files.
        prctl(PR_SET_DUMPABLE, 0)
        entry.join_new_session_keyring()
        # Opened from here, before the join: joining the mount namespace alone lands on
        # that namespace's root mount, which is not the container's root.
        root = entry.open_container_root(container)
        # One call through the pidfd: all namespaces of that very process, or none. The
        # cgroup namespace, entered after the container's cgroup was joined, hides the
        # host's cgroup tree as it does from the container's own processes.
        setns(container, CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET
              | CLONE_NEWCGROUP)
        entry.enter_root(root)
        if stdio.pty_socket >= 0:  # exec -t: a terminal from the container's devpts
            from pydock.core.runtime.terminal import container_terminal

            container_terminal(stdio.pty_socket, stdio.window_size)
        # Before the chdir: -w /proc/self/fd/N must find no fd of the caller's.
        entry.close_inherited_fds(keep=(error_fd, helper_fd))
        env = _drop_privileges(spec, load_seccomp)
        entry.enter_workdir(spec.workdir)
        _reset_process_state()
        _exec(spec.argv, env, error_fd, helper_fd)
    except BaseException as exc:
        _fail(error_fd, EXIT_PYDOCK_ERROR, f"exec setup failed: {_reason(exc)}")
    finally:
        os._exit(EXIT_PYDOCK_ERROR)


def _set_up(spec: ProcessSpec, rootfs: str, mounts: Sequence[Mount], keep_fds: tuple[int, ...],
            load_seccomp: Callable[[], None], stdio: Stdio) -> dict[str, str]:
    """Namespaces, root, hostname, network, user; returns the command's environment."""
    os.umask(0)
    # The cgroup namespace after the cgroup was joined (_begin_child): it is rooted at the
    # cgroup the process is in when it unshares (pydock.core.runtime.cgroups says why).
    namespaces = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
    if spec.network == "none" and spec.netns_fd >= 0:
        setns(spec.netns_fd, CLONE_NEWNET)
    elif spec.network == "none":
        namespaces |= CLONE_NEWNET
    unshare(namespaces)
    entry.join_new_session_keyring()
    entry.close_inherited_fds(keep=(*keep_fds, *((stdio.pty_socket,)
                                                 if stdio.pty_socket >= 0 else ())))
    prepare_root(rootfs, mounts, spec.root)
    if stdio.pty_socket >= 0:
        # Now that the container's own /dev/pts is there: its terminal comes from it, as
        # runc's does, so that ttyname() finds /dev/pts/0 inside.
        from pydock.core.runtime.terminal import container_terminal

        container_terminal(stdio.pty_socket, stdio.window_size)
    sethostname(spec.hostname)
    if spec.network == "none":
        set_link_up("lo")
    # Like docker: a missing working directory is created, by root and before the root
    # turns read-only, then entered as the container's user.
    os.makedirs(spec.workdir, 0o755, exist_ok=True)
    if spec.read_only:
        remount_root_read_only()
    env = _drop_privileges(spec, load_seccomp)
    entry.enter_workdir(spec.workdir)
    _reset_process_state()
    return env


def _exec(argv: list[str], env: dict[str, str], error_fd: int, helper_fd: int) -> NoReturn:
    try:
        path = sealed_exec.look_path(argv[0], env)
        sealed_exec.exec_through_helper(helper_fd, path, argv, env, error_fd)
    except sealed_exec.ExecFailed as failed:
        _fail(error_fd, failed.code, str(failed))


def _drop_privileges(spec: ProcessSpec, load_seccomp: Callable[[], None]) -> dict[str, str]:
    """Become the container's user with the container's capabilities only, under the
    container's seccomp filter and, with no-new-privileges, the flag no exec can clear (a
    setuid-root binary then runs with the caller's uid); returns the command's environment.

    runc's order: the bounding set shrinks first, while CAP_SETPCAP is still there; then
    the user switch, which needs CAP_SETUID and CAP_SETGID whether the container keeps
    them or not; then the rest goes.
    """
    # runc's order for the seccomp filter: loading one takes CAP_SYS_ADMIN unless
    # no_new_privs is set, so without no-new-privileges it comes before the drop (and the
    # profile must allow the steps below); with it, once the flag is set, so that the
    # profile need not allow setuid, capset and the rest.
    if not spec.no_new_privileges:
        load_seccomp()
    capabilities.limit_before_user_switch(spec.capability_set)
    env = _become_user(spec.user or "0", spec.env)
    capabilities.limit_after_user_switch(spec.capability_set)
    if spec.no_new_privileges:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        load_seccomp()
    return env


def _become_user(user: str, env: dict[str, str]) -> dict[str, str]:
    """Switch to ``user`` (read from the container's own passwd and group files);
    returns the environment with HOME defaulted to that user's home, as docker does."""
    failpoints.reached("setup.user-lookup")
    credentials = users.resolve(user, users.read_small("/etc/passwd"),
                                users.read_small("/etc/group"))
    os.setgroups(list(credentials.groups))
    os.setgid(credentials.gid)
    os.setuid(credentials.uid)
    return {"HOME": credentials.home, **env}


def _reset_process_state() -> None:
    """What the command must not inherit from the Python runtime that started it."""
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: a
    # container's `yes | head` would never end.
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    os.umask(0o022)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _take_stdio(stdio: Stdio) -> None:
    for target, fd in enumerate((stdio.stdin, stdio.stdout, stdio.stderr)):
        if fd != target:
            os.dup2(fd, target)
    # A session of its own, never the caller's: in the caller's session the caller's
    # terminal is the container's controlling terminal, and TIOCSTI (or an open of
    # /dev/tty) types commands into the shell of whoever ran pydock, as host root.
    os.setsid()
    if stdio.tty:
        import termios

        # With the pty as its controlling terminal: job control and ^C work inside the
        # container, and only there.
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _reason(exc: BaseException) -> str:
    # "/etc/passwd: File exists" (a -w that names a file), not "[Errno 17] File exists: ...".
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _fail(error_fd: int, code: int, message: str) -> NoReturn:
    try:
        os.write(error_fd, f"{code} {message}".encode())
    finally:
        os._exit(code)

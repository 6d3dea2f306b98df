"""Container records: one directory per container under ``<root>/containers/<name>``.

A record is created complete or not at all: it is written into a temporary
directory and renamed into place with renameat2(RENAME_NOREPLACE), so two
``pydock run`` with the same name race safely (exactly one rename succeeds)
and a crash never leaves a half-made record under a real name. Updates are
written to a temporary file, fsynced and renamed over ``state.json``.
Mutations of one container are serialised by an flock on its ``lock`` file.

A record that cannot be read as one (a file damaged outside pydock) is never trusted:
:meth:`StateStore.load` raises :class:`CorruptRecord`, and :meth:`StateStore.salvage`
reads from it only what ``rm -f`` needs to find the container's remains.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from pydock.core import failpoints, storage_root
from pydock.core.errors import PydockError
from pydock.core.files import hidden_name, remove_tree, write_json_atomic
from pydock.core.ids import CONTAINER_ID, DIGEST
from pydock.core.leftovers import sweep
from pydock.core.syscalls import rename_noreplace

NAME_RULE = r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"  # compiled and cached by re on first use
# The name doubles as the container's default hostname, which the kernel caps at 64 bytes.
NAME_MAX = 64

CREATED, RUNNING, EXITED = "created", "running", "exited"


class CorruptRecord(PydockError):
    """A record that exists but cannot be read as one."""


class NameInUse(PydockError):
    """Another container has the name."""


def now() -> str:
    """The current time as RFC 3339 in UTC, the format docker uses in inspect."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_name(name: str) -> None:
    if len(name) > NAME_MAX:
        raise PydockError(f"invalid container name ({len(name)} characters): "
                          f"at most {NAME_MAX} are allowed")
    if not re.fullmatch(NAME_RULE, name):
        raise PydockError(f"invalid container name {name!r}: only "
                          f"{NAME_RULE} is allowed")


class ContainerRecord:
    """Everything pydock knows about one container; serialised as ``state.json``.

    What the container is, is its ``spec`` (:mod:`pydock.core.containers.spec`, shaped
    like the OCI runtime spec's config.json), written once when it is created; the other
    fields say where it came from and what has become of it.

    A plain class, not a dataclass: it is defined on the way to every container's start,
    where a dataclass of this size costs milliseconds to build. The signature of
    ``__init__`` is the one list of fields, which :meth:`from_json` checks against.
    """

    def __init__(self, *, id: str, name: str, driver: str, image: str, image_id: str,
                 layers: list[str], spec: dict[str, Any], created: str = "",
                 status: str = CREATED, pid: int = 0, pid_start: int = 0,
                 monitor_pid: int = 0, monitor_start: int = 0, exit_code: int | None = None,
                 error: str = "", started: str = "", finished: str = "",
                 oom_killed: bool = False, restart_count: int = 0) -> None:
        self.id = id
        self.name = name
        self.driver = driver
        self.image = image
        self.image_id = image_id
        self.layers = layers
        self.spec = spec
        self.created = created  # given by the creator: now() when it is new
        self.status = status
        self.pid = pid
        self.pid_start = pid_start
        # The monitor that records the container's exit: while it lives, more output may come.
        self.monitor_pid = monitor_pid
        self.monitor_start = monitor_start
        self.exit_code = exit_code
        self.error = error
        self.started = started
        self.finished = finished
        self.oom_killed = oom_killed  # the kernel's OOM killer killed a process of the container
        self.restart_count = restart_count  # restarts by its policy since it was started

    def __repr__(self) -> str:
        return f"ContainerRecord({self.to_json()!r})"

    @property
    def command(self) -> list[str]:
        return list(self.spec["process"]["args"])

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: Any) -> ContainerRecord:
        """The record in ``data``; TypeError if it is not one, field types included (a
        command that is not a list must fail here, not in whatever reads it later)."""
        if not isinstance(data, dict):
            raise TypeError("a record must be a JSON object")
        # The annotations are strings here (from __future__ import annotations).
        types = cls.__init__.__annotations__
        fields = {k: v for k, v in data.items() if k in types and k != "return"}
        for key, value in fields.items():
            if not _FIELD_CHECKS[types[key]](value):
                raise TypeError(f"{key} is not {types[key]}: {value!r}")
        if "spec" not in fields and "command" in data:
            fields["spec"] = _legacy_spec(data)
        if "spec" in fields:
            _check_spec(fields["spec"])
        return cls(**fields)


def _list_of_str(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _list_of_dict(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "int | None": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "list[str]": _list_of_str,
    "dict[str, Any]": lambda v: isinstance(v, dict),
}
# What the runtime reads of a spec, and the type it must have: a record is checked when it
# is loaded, so that a damaged one is refused as corrupt, never half-used.
_SPEC_FIELDS: dict[tuple[str, ...], Callable[[Any], bool]] = {
    ("process", "args"): _list_of_str,
    ("process", "env"): _list_of_str,
    ("process", "cwd"): _FIELD_CHECKS["str"],
    ("process", "terminal"): _FIELD_CHECKS["bool"],
    ("process", "user", "username"): _FIELD_CHECKS["str"],
    ("process", "capabilities", "bounding"): _list_of_str,
    ("process", "noNewPrivileges"): _FIELD_CHECKS["bool"],
    ("root", "path"): _FIELD_CHECKS["str"],
    ("root", "readonly"): _FIELD_CHECKS["bool"],
    ("hostname",): _FIELD_CHECKS["str"],
    ("mounts",): _list_of_dict,
    ("linux", "namespaces"): _list_of_dict,
    ("linux", "resources"): _FIELD_CHECKS["dict[str, Any]"],
    ("linux", "devices"): _list_of_dict,
    ("linux", "maskedPaths"): _list_of_str,
    ("linux", "readonlyPaths"): _list_of_str,
    ("annotations",): _FIELD_CHECKS["dict[str, Any]"],
}


# The fields a record had before it held a spec, each optional field with the release
# that added it absent from older records.
_LEGACY_FIELDS = {"command": "list[str]", "env": "list[str]", "workdir": "str",
                  "hostname": "str", "network": "str", "read_only": "bool", "user": "str",
                  "volumes": "list[str]", "tty": "bool", "memory": "int", "nano_cpus": "int",
                  "pids_limit": "int", "cap_add": "list[str]", "cap_drop": "list[str]",
                  "security_opt": "list[str]"}
_LEGACY_REQUIRED = ("command", "env", "workdir", "hostname", "network", "read_only")


def _legacy_spec(data: dict[str, Any]) -> dict[str, Any]:
    """The spec of a record written before records held one (see
    :func:`pydock.core.containers.spec.from_legacy_record`)."""
    fields = {key: data[key] for key in _LEGACY_FIELDS if key in data}
    for key in _LEGACY_REQUIRED:
        if key not in fields:
            raise TypeError(f"{key} is missing")
    for key, value in fields.items():
        if not _FIELD_CHECKS[_LEGACY_FIELDS[key]](value):
            raise TypeError(f"{key} is not {_LEGACY_FIELDS[key]}: {value!r}")
    from pydock.core.containers.spec import from_legacy_record

    try:
        return from_legacy_record(fields)
    except PydockError as exc:  # a value the flags' own checks refuse
        raise TypeError(str(exc)) from None


def _check_spec(spec: dict[str, Any]) -> None:
    for path, check in _SPEC_FIELDS.items():
        value: Any = spec
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not check(value):
            raise TypeError(f"spec.{'.'.join(path)} is invalid: {value!r}")


class Remains(NamedTuple):
    """What can still be read from a corrupt record: each field as it appears in the file
    (written by :meth:`StateStore.save`), or empty. Enough to find what the container left:
    its process, its cgroup and its storage, never enough to run it."""

    id: str = ""
    driver: str = ""
    image_id: str = ""
    pid: int = 0
    pid_start: int = 0

    @classmethod
    def read(cls, text: str) -> Remains:
        found: dict[str, Any] = {}
        for key, pattern in _SALVAGED.items():
            match = re.search(rf'"{key}"\s*:\s*{pattern}', text)
            if match:
                found[key] = int(match[1]) if pattern == _NUMBER else match[1]
        return cls(**found)


# A value counts only with what follows it: a number cut short must not pass for a pid.
_NUMBER = r"([0-9]{1,19})\s*[,}]"
_SALVAGED = {"id": rf'"({CONTAINER_ID})"', "driver": r'"([a-zA-Z0-9_.-]+)"',
             "image_id": rf'"({DIGEST})"', "pid": _NUMBER, "pid_start": _NUMBER}


class StateStore:
    """Container records under ``<root>/containers``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "containers"

    def path(self, name: str) -> Path:
        # Names come from the command line: one outside the rule ("../x", "/etc", "a/b")
        # would otherwise name a directory outside the store, which rm would delete.
        if len(name) > NAME_MAX or not re.fullmatch(NAME_RULE, name):
            raise PydockError(f"no such container: {name!r} is not a valid container name")
        return self.dir / name

    def log_path(self, name: str) -> Path:
        return self.path(name) / "container.log"

    def stop_mark(self, name: str) -> Path:
        """A file whose presence says that ``stop`` (or ``kill`` with TERM or KILL) ended
        the container: its restart policy no longer applies until it is started again
        (docker's HasBeenManuallyStopped). A file of its own, not a field of the record,
        so that marking takes no lock: the lock may be held by a monitor whose container's
        setup hangs, and a stop must get through all the same."""
        return self.path(name) / "stopped"

    def create(self, record: ContainerRecord) -> int:
        """Write a new record, already locked; :class:`PydockError` if the name is taken.

        Returns the descriptor holding the record's lock: close it to let ``rm`` and
        ``prune`` at the container. The lock is taken before the record appears under
        its name, so no other command ever sees a container that is still being set up.
        """
        storage_root.ensure(self.dir.parent)
        tmp = self.dir / hidden_name(".new-")
        tmp.mkdir(mode=0o700)
        lock = os.open(tmp / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_json_atomic(tmp / "state.json", record.to_json())
            rename_noreplace(str(tmp), str(self.path(record.name)))
        except OSError as exc:
            os.close(lock)
            with contextlib.suppress(OSError):
                remove_tree(tmp)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise NameInUse(f"container name {record.name!r} is already in use") from None
            raise
        return lock

    def load(self, name: str) -> ContainerRecord:
        """The record; PydockError if there is none, CorruptRecord if it is damaged."""
        path = self.path(name) / "state.json"
        try:
            data = json.loads(path.read_bytes())
            return ContainerRecord.from_json(data)
        except FileNotFoundError:
            if self.path(name).is_dir():  # the directory without its record
                raise CorruptRecord(f"container {name}: corrupt record: {path} is "
                                    "missing") from None
            raise PydockError(f"no such container: {name}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise CorruptRecord(f"container {name}: corrupt record {path}: {exc}") from None

    def salvage(self, name: str) -> Remains:
        """What a corrupt record still tells (see :class:`Remains`)."""
        try:
            text = (self.path(name) / "state.json").read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return Remains()
        return Remains.read(text)

    def save(self, record: ContainerRecord, durable: bool = True) -> None:
        """Replace the record atomically; FileNotFoundError if it was removed meanwhile."""
        write_json_atomic(self.path(record.name) / "state.json", record.to_json(), durable)

    def names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.dir) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def delete(self, name: str) -> None:
        # Renamed out of the way first: a crash during the removal then leaves a hidden
        # directory (which sweep() removes), never a half-deleted record squatting on the name.
        doomed = self.dir / hidden_name(".rm-")
        try:
            os.rename(self.path(name), doomed)
        except FileNotFoundError:
            return
        failpoints.reached("rm.record-renamed")
        with contextlib.suppress(OSError):
            remove_tree(doomed)

    def sweep(self) -> list[str]:
        """Remove what crashed creates, updates and deletes left behind (see
        :mod:`leftovers`); what could not be removed, said for a warning."""
        problems = sweep(self.dir, (".new-", ".rm-"))
        for name in self.names():
            problems += sweep(self.dir / name, (".new-",))
        return problems

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the container's lock; PydockError if the container does not exist."""
        fd = self.lock(name)
        try:
            yield
        finally:
            os.close(fd)

    def lock(self, name: str) -> int:
        """Take the container's lock; the descriptor that holds it (close it to let go).
        PydockError if the container does not exist.

        The lock file lives in the record's directory and goes with it: whoever waited
        for the lock while the record was deleted holds the lock of a record that is gone
        (and the name may have a new one). So the lock counts only once it is taken on
        the file that is under the name now.
        """
        path = self.path(name) / "lock"
        while True:
            try:
                # O_CREAT only adds a lock file a damaged record lacks: in a directory
                # that is gone, this fails as it should.
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                raise PydockError(f"no such container: {name}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if _same_file(fd, path):
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def generate_name(self) -> str:
        """A free docker-style name such as ``brave_turing``."""
        for _ in range(100):
            name = f"{_pick(_ADJECTIVES)}_{_pick(_SURNAMES)}"
            if not self.path(name).exists():
                return name
        return f"pydock_{os.urandom(6).hex()}"


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def new_container_id() -> str:
    return os.urandom(32).hex()


def _pick(choices: tuple[str, ...]) -> str:
    # os.urandom rather than the random module, which costs milliseconds to import on every
    # run; the slight modulo bias does not matter for a name.
    return choices[int.from_bytes(os.urandom(2)) % len(choices)]


_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
               "merry", "nimble", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen")
_SURNAMES = ("babbage", "curie", "dijkstra", "euler", "fermat", "gauss", "hopper", "knuth",
             "lamport", "lovelace", "noether", "pike", "ritchie", "shannon", "thompson", "turing")

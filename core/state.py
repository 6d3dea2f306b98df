"""Container records: one directory per container under ``<root>/containers/<name>``.

A record is created complete or not at all: it is written into a temporary
directory and renamed into place with renameat2(RENAME_NOREPLACE), so two
``pydock run`` with the same name race safely (exactly one rename succeeds)
and a crash never leaves a half-made record under a real name. Updates are
written to a temporary file, fsynced and renamed over ``state.json``.
Mutations of one container are serialised by an flock on its ``lock`` file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydock.core.errors import PydockError
from pydock.core.files import flocked, random_suffix, remove_tree, write_json_atomic
from pydock.core.syscalls import rename_noreplace

NAME_RULE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
# The name doubles as the container's default hostname, which the kernel caps at 64 bytes.
NAME_MAX = 64

CREATED, RUNNING, EXITED = "created", "running", "exited"


def now() -> str:
    """The current time as RFC 3339 in UTC, the format docker uses in inspect."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def validate_name(name: str) -> None:
    if len(name) > NAME_MAX:
        raise PydockError(f"invalid container name ({len(name)} characters): "
                          f"at most {NAME_MAX} are allowed")
    if not NAME_RULE.fullmatch(name):
        raise PydockError(f"invalid container name {name!r}: only "
                          f"{NAME_RULE.pattern} is allowed")


@dataclass
class ContainerRecord:
    """Everything pydock knows about one container; serialised as ``state.json``."""

    id: str
    name: str
    driver: str
    image: str
    image_id: str
    layers: list[str]
    command: list[str]
    env: list[str]
    workdir: str
    hostname: str
    network: str
    read_only: bool
    user: str = ""
    volumes: list[str] = field(default_factory=list)  # each -v as given (docker's Binds)
    tty: bool = False
    # Resource limits in docker's units (inspect's HostConfig); 0 is no limit. Records
    # written before limits existed have none, which is what they had.
    memory: int = 0
    nano_cpus: int = 0
    pids_limit: int = 0
    created: str = field(default_factory=now)
    status: str = CREATED
    pid: int = 0
    pid_start: int = 0
    # The monitor that records the container's exit: while it lives, more output may come.
    monitor_pid: int = 0
    monitor_start: int = 0
    exit_code: int | None = None
    error: str = ""
    started: str = ""
    finished: str = ""
    oom_killed: bool = False  # the kernel's OOM killer killed a process of the container

    @property
    def has_limits(self) -> bool:
        """Whether the container has a cgroup of its own (pydock.core.cgroups)."""
        return bool(self.memory or self.nano_cpus or self.pids_limit)

    @classmethod
    def from_json(cls, data: Any) -> ContainerRecord:
        if not isinstance(data, dict):
            raise TypeError("a record must be a JSON object")
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (start time in clock ticks), 0 if there is no such process.

    Together with the pid it names one process for good: a recycled pid has another start time.
    A process that has exited but not been reaped (a zombie) counts as gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    # A zombie has exited already; only its parent has yet to collect its status.
    if fields[0] in (b"Z", b"X"):
        return 0
    return int(fields[19])


class StateStore:
    """Container records under ``<root>/containers``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "containers"

    def path(self, name: str) -> Path:
        # Names come from the command line: one outside the rule ("../x", "/etc", "a/b")
        # would otherwise name a directory outside the store, which rm would delete.
        if len(name) > NAME_MAX or not NAME_RULE.fullmatch(name):
            raise PydockError(f"no such container: {name!r} is not a valid container name")
        return self.dir / name

    def log_path(self, name: str) -> Path:
        return self.path(name) / "container.log"

    def create(self, record: ContainerRecord) -> int:
        """Write a new record, already locked; :class:`PydockError` if the name is taken.

        Returns the descriptor holding the record's lock: close it to let ``rm`` and
        ``prune`` at the container. The lock is taken before the record appears under
        its name, so no other command ever sees a container that is still being set up.
        """
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.dir / f".new-{random_suffix()}"
        tmp.mkdir(mode=0o700)
        lock = os.open(tmp / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_json_atomic(tmp / "state.json", asdict(record))
            rename_noreplace(str(tmp), str(self.path(record.name)))
        except OSError as exc:
            os.close(lock)
            with contextlib.suppress(OSError):
                remove_tree(tmp)
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise PydockError(f"container name {record.name!r} is already in use") from None
            raise
        return lock

    def load(self, name: str) -> ContainerRecord:
        path = self.path(name) / "state.json"
        try:
            data = json.loads(path.read_text())
            return ContainerRecord.from_json(data)
        except FileNotFoundError:
            raise PydockError(f"no such container: {name}") from None
        except (ValueError, TypeError) as exc:
            raise PydockError(f"container {name}: corrupt record {path}: {exc}") from None

    def save(self, record: ContainerRecord) -> None:
        """Replace the record atomically; FileNotFoundError if it was removed meanwhile."""
        write_json_atomic(self.path(record.name) / "state.json", asdict(record))

    def names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.dir) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def delete(self, name: str) -> None:
        # Renamed out of the way first: a crash during the removal then leaves a hidden
        # directory, never a half-deleted record squatting on the name.
        doomed = self.dir / f".rm-{random_suffix()}"
        try:
            os.rename(self.path(name), doomed)
        except FileNotFoundError:
            return
        with contextlib.suppress(OSError):
            remove_tree(doomed)

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the container's lock; PydockError if the container does not exist."""
        try:
            with flocked(self.path(name) / "lock", create=False):
                yield
        except FileNotFoundError:
            raise PydockError(f"no such container: {name}") from None

    def generate_name(self) -> str:
        """A free docker-style name such as ``brave_turing``."""
        for _ in range(100):
            name = f"{_pick(_ADJECTIVES)}_{_pick(_SURNAMES)}"
            if not self.path(name).exists():
                return name
        return f"pydock_{os.urandom(6).hex()}"


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

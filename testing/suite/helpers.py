"""What the conformance cases are written with: appliers (the changes a case makes, applied
alike to a container's root and to the flat reference directory), and the :class:`Harness`
that builds layers through the driver, keeps the flat reference beside them and compares the
two trees (dumped with :func:`pydock.testing.manifest.manifest`) at every step.

containerd's ``snapshots/testsuite/helpers.go`` and continuity's ``fs/fstest`` play this part
for snapshotters; see :mod:`pydock.testing.conformance` for the suite as a whole.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

from pydock.core.containers import commit as snapshots
from pydock.core.driver import Mount, StorageDriver
from pydock.core.images.store import ImageStore
from pydock.core.layers.treecopy import copy_tree
from pydock.core.plugins import DriverRegistry, driver_home
from pydock.core.runtime.mounted import in_container_root
from pydock.core.syscalls import MNT_DETACH, umount2
from pydock.testing.cli import mounts_under
from pydock.testing.layers import import_layers
from pydock.testing.manifest import Entry, diff_manifests, manifest
from pydock.testing.tar import Member

BUILTIN_DRIVERS = ("overlay", "copy", "bind")
# Drivers whose container root is the kernel's overlay mount, without redirect_dir or index.
KERNEL_OVERLAY_DRIVERS = frozenset({"overlay"})
# Drivers that share one root between all containers of an image, by design.
SHARED_ROOT_DRIVERS = frozenset({"bind"})

# The clock appliers see: layer N of a case is written at BASE_TIME + N seconds.
BASE_TIME = 1_700_000_000
# Enough diff lines to see the pattern of a failure without burying it.
_MAX_DIFF_LINES = 40

Tree = dict[str, Entry]
DriverFactory = Callable[[Path], StorageDriver]


class ConformanceFailure(AssertionError):
    """The driver does not behave as the contract says; the message says where and how."""


class DriverUnavailable(Exception):
    """The driver's ``available()`` said no; the message is its reason."""


# -- appliers -----------------------------------------------------------------------------------


class Applier(Protocol):
    """One change to a tree, applied the same way to a container's root and to the reference."""

    def apply(self, root: Path, now: int) -> None:
        """Make the change under ``root``; ``now`` is the layer's clock (whole seconds)."""


@dataclass(frozen=True)
class _Readable:
    """Appliers print as they would be written, modes in octal, for failure messages."""

    def __str__(self) -> str:
        args = ", ".join(oct(value) if f.name == "mode" else repr(value)
                         for f in dataclasses.fields(self) for value in [getattr(self, f.name)])
        return f"{type(self).__name__}({args})"


def _at(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _set_mtime(target: Path, seconds: int) -> None:
    os.utime(target, ns=(seconds * 10**9, seconds * 10**9), follow_symlinks=False)


@dataclass(frozen=True)
class CreateFile(_Readable):
    """Create or rewrite (in place, O_TRUNC) a regular file; mode set exactly, umask aside."""

    path: str
    content: bytes = b""
    mode: int = 0o644

    def apply(self, root: Path, now: int) -> None:
        target = _at(root, self.path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     self.mode)
        try:
            os.write(fd, self.content)
            os.fchmod(fd, self.mode)
        finally:
            os.close(fd)
        _set_mtime(target, now)


@dataclass(frozen=True)
class CreateDir(_Readable):
    path: str
    mode: int = 0o755

    def apply(self, root: Path, now: int) -> None:
        target = _at(root, self.path)
        os.mkdir(target)
        os.chmod(target, self.mode)


@dataclass(frozen=True)
class Remove(_Readable):
    """Remove a file, a symlink, a device or a whole directory tree; it must exist."""

    path: str

    def apply(self, root: Path, now: int) -> None:
        target = _at(root, self.path)
        if stat.S_ISDIR(os.lstat(target).st_mode):
            shutil.rmtree(target)
        else:
            os.unlink(target)


@dataclass(frozen=True)
class Chown(_Readable):
    path: str
    uid: int
    gid: int

    def apply(self, root: Path, now: int) -> None:
        os.chown(_at(root, self.path), self.uid, self.gid, follow_symlinks=False)


@dataclass(frozen=True)
class Chmod(_Readable):
    path: str
    mode: int

    def apply(self, root: Path, now: int) -> None:
        os.chmod(_at(root, self.path), self.mode)


@dataclass(frozen=True)
class Rename(_Readable):
    """rename(2): replaces a file at ``dst``."""

    src: str
    dst: str

    def apply(self, root: Path, now: int) -> None:
        os.rename(_at(root, self.src), _at(root, self.dst))


@dataclass(frozen=True)
class MoveByCopy(_Readable):
    """What ``mv`` does when rename(2) says EXDEV: copy the tree with everything, then remove."""

    src: str
    dst: str

    def apply(self, root: Path, now: int) -> None:
        copy_tree(_at(root, self.src), _at(root, self.dst))
        Remove(self.src).apply(root, now)


@dataclass(frozen=True)
class Symlink(_Readable):
    target: str
    path: str

    def apply(self, root: Path, now: int) -> None:
        os.symlink(self.target, _at(root, self.path))


@dataclass(frozen=True)
class Hardlink(_Readable):
    """A new name ``path`` for the file at ``existing``."""

    existing: str
    path: str

    def apply(self, root: Path, now: int) -> None:
        os.link(_at(root, self.existing), _at(root, self.path), follow_symlinks=False)


@dataclass(frozen=True)
class SetXattr(_Readable):
    """Set a user.* xattr (trusted.* ones are pydock's own business: layer tars drop them)."""

    path: str
    name: str
    value: bytes

    def __post_init__(self) -> None:
        if not self.name.startswith("user."):
            raise ValueError(f"SetXattr sets user.* xattrs only, not {self.name!r}")

    def apply(self, root: Path, now: int) -> None:
        os.setxattr(_at(root, self.path), self.name, self.value, follow_symlinks=False)


@dataclass(frozen=True)
class Mknod(_Readable):
    """A character device; not 0/0, which the layer format reads as a whiteout (a deletion)."""

    path: str
    major: int
    minor: int
    mode: int = 0o666

    def apply(self, root: Path, now: int) -> None:
        target = _at(root, self.path)
        os.mknod(target, stat.S_IFCHR | self.mode, os.makedev(self.major, self.minor))
        os.chmod(target, self.mode)


@dataclass(frozen=True)
class Mkfifo(_Readable):
    path: str
    mode: int = 0o644

    def apply(self, root: Path, now: int) -> None:
        target = _at(root, self.path)
        os.mkfifo(target, self.mode)
        os.chmod(target, self.mode)


@dataclass(frozen=True)
class SetMtime(_Readable):
    """Set a file's mtime (whole seconds: layer tars carry no finer times)."""

    path: str
    seconds: int

    def apply(self, root: Path, now: int) -> None:
        _set_mtime(_at(root, self.path), self.seconds)


def apply_all(appliers: Sequence[Applier], root: Path, now: int) -> None:
    """Apply in order; a failure names the applier, since a path alone can be ambiguous."""
    for applier in appliers:
        try:
            applier.apply(root, now)
        except OSError as exc:
            raise OSError(exc.errno, f"{applier}: {exc.strerror}") from None


# -- the harness --------------------------------------------------------------------------------


def registry_factory(name: str) -> DriverFactory:
    """``root -> driver`` for the driver registered as ``name`` (entry points scanned if needed)."""
    cls = DriverRegistry().driver_class(name)
    return lambda root: cls(driver_home(root, name))


def readonly(mounts: Sequence[Mount], rootfs: Path) -> list[Mount]:
    """The same mounts with "ro" added; for a driver that mounts nothing (its rootfs_dir is the
    root), a read-only bind of that directory onto itself, which is what "ro" would mean."""
    if not mounts:
        return [Mount("bind", os.fspath(rootfs), ("rbind", "ro"))]
    return [m._replace(options=(*m.options, "ro")) for m in mounts]


def _tree_to_json(tree: Tree) -> dict[str, dict[str, Any]]:
    # in_container_root hands results back as JSON: bytes become hex, tuples lists.
    return {path: {**dataclasses.asdict(entry),
                   "xattrs": {name: value.hex() for name, value in entry.xattrs.items()}}
            for path, entry in tree.items()}


def _tree_from_json(data: dict[str, dict[str, Any]]) -> Tree:
    return {path: Entry(**{**fields,
                           "rdev": tuple(fields["rdev"]) if fields["rdev"] is not None else None,
                           "xattrs": {k: bytes.fromhex(v) for k, v in fields["xattrs"].items()}})
            for path, fields in data.items()}


@dataclass
class Chain:
    """A layer chain made by :meth:`Harness.check_layers` and its reference tree."""

    ids: list[str]  # diff_ids, bottom first: the harness's empty base, then the case's layers
    flat: Path  # the reference: every layer's appliers applied, in order, to a plain directory

    def __str__(self) -> str:
        top = len(self.ids) - 1
        return "the empty base layer" if top == 0 else f"layers 1..{top}"


@dataclass
class Harness:
    """One driver instance over a fresh storage root, and the steps cases are written in.

    Every container prepared here is removed by :meth:`close`, whatever happens.
    """

    driver_name: str
    driver: StorageDriver
    root: Path  # the storage root: layers/ and storage/<driver>/
    work: Path  # scratch space beside it: reference trees, commit staging
    case: str
    store: ImageStore = field(init=False)
    base: str = field(init=False)  # diff_id of the empty bottom layer
    _containers: set[str] = field(init=False, default_factory=set)
    _layers: dict[str, Tree] = field(init=False, default_factory=dict)
    _flats: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.store = ImageStore(self.root)
        # No members: the layer every case's chain starts from (an image needs one layer).
        self.base = self.import_layer([])

    # -- failing readably

    def fail(self, message: str) -> NoReturn:
        raise ConformanceFailure(f"{self.driver_name}: case {self.case}: {message}")

    def check_equal(self, seen: Tree, expected: Tree, when: str,
                    changes: Sequence[Applier] = ()) -> None:
        """Fail, listing the differences, unless the driver's tree ``seen`` is ``expected``."""
        if seen == expected:
            return
        lines = diff_manifests(expected, seen)
        shown = [f"  {line}" for line in lines[:_MAX_DIFF_LINES]]
        if len(lines) > _MAX_DIFF_LINES:
            shown.append(f"  ... and {len(lines) - _MAX_DIFF_LINES} more")
        context = "".join(f"\n  {applier}" for applier in changes)
        self.fail(f"{when}: the container's root differs from the reference tree (first tree: "
                  f"the reference, a plain directory; second: the driver's)\n" + "\n".join(shown)
                  + (f"\nchanges of this layer:{context}" if context else ""))

    # -- layers

    def import_layer(self, members: Sequence[Member]) -> str:
        """A layer from a tar of ``members`` (the image-import path); its diff_id."""
        [diff_id] = import_layers(self.store, [members])
        return self._imported(diff_id)

    def layer_paths(self, chain: Sequence[str]) -> list[Path]:
        return self.store.layer_paths(list(chain))

    def _imported(self, diff_id: str) -> str:
        # Recorded once, at import, so close() can tell whether anything wrote into it later.
        if diff_id not in self._layers:
            self._layers[diff_id] = manifest(self.store.layer_path(diff_id))
        return diff_id

    # -- containers

    def prepare(self, chain: Sequence[str], container_id: str | None = None) -> str:
        container_id = container_id or secrets.token_hex(32)
        self._containers.add(container_id)
        self.driver.prepare(container_id, self.layer_paths(chain))
        return container_id

    def remove(self, container_id: str) -> None:
        self.driver.remove(container_id)
        self._containers.discard(container_id)

    def run(self, container_id: str, chain: Sequence[str], task: Callable[[str], Any],
            read_only: bool = False) -> Any:
        """``task(root)`` in a child with the container's root mounted there; its JSON result."""
        rootfs = self.driver.rootfs_dir(container_id)
        mounts = self.driver.mounts(container_id, self.layer_paths(chain))
        if read_only:
            mounts = readonly(mounts, rootfs)
        return in_container_root(os.fspath(rootfs), mounts, task)

    def view(self, container_id: str, chain: Sequence[str]) -> Tree:
        """The manifest of the container's root as the container sees it."""
        data = self.run(container_id, chain, lambda root: _tree_to_json(manifest(Path(root))))
        return _tree_from_json(data)

    def changes(self, container_id: str, chain: Sequence[str]) -> set[tuple[str, str]]:
        """(kind, path) of what the core reports changed, found as ``pydock diff`` finds it."""
        return {(c.kind, c.path) for c in snapshots.changes(self.driver, container_id,
                                                            self.layer_paths(chain))}

    def commit(self, container_id: str, chain: Sequence[str]) -> str:
        """The container's changes as a new layer, made exactly as ``pydock commit`` makes it."""
        return self._imported(snapshots.commit_layer(self.driver, container_id,
                                                     self.layer_paths(chain), self.store))

    # -- the reference

    def flat(self) -> Path:
        """A new, empty reference directory, shaped like the empty bottom layer's root."""
        self._flats += 1
        path = self.work / f"flat-{self._flats}"
        path.mkdir()
        os.chmod(path, 0o755)
        return path

    # -- containerd's checkSnapshots

    def check_layers(self, *layers: Sequence[Applier], on: Chain | None = None) -> Chain:
        """Make one layer per applier list through the driver and check the driver's tree
        against the reference at every step; returns the chain, which ``on`` continues.

        For layer N a container is prepared on the layers below; its root must equal the
        reference before the changes and again after them; its changes are committed as
        layer N and it is removed. A fresh container on the whole chain is checked last.
        """
        chain = on or Chain([self.base], self.flat())
        for appliers in layers:
            number = len(chain.ids)
            container_id = self.prepare(chain.ids)
            now = BASE_TIME + number

            def make_layer(root: str, appliers: Sequence[Applier] = appliers,
                           now: int = now) -> dict[str, Any]:
                before = _tree_to_json(manifest(Path(root)))
                try:
                    apply_all(appliers, Path(root), now)
                except OSError as exc:
                    # Reported after the "before" check, which usually says why it failed.
                    return {"before": before, "error": str(exc)}
                return {"before": before, "after": _tree_to_json(manifest(Path(root)))}

            made = self.run(container_id, chain.ids, make_layer)
            self.check_equal(_tree_from_json(made["before"]), manifest(chain.flat),
                             f"a container on {chain}, before making layer {number}")
            if "error" in made:
                self.fail(f"making layer {number} in a container on {chain}: {made['error']}")
            after = made["after"]
            apply_all(appliers, chain.flat, now)
            self.check_equal(_tree_from_json(after), manifest(chain.flat),
                             f"layer {number}'s changes applied in the container, before commit",
                             appliers)
            chain.ids.append(self.commit(container_id, chain.ids))
            self.remove(container_id)
        container_id = self.prepare(chain.ids)
        self.check_equal(self.view(container_id, chain.ids), manifest(chain.flat),
                         f"a fresh container on {chain}", layers[-1] if layers else ())
        self.remove(container_id)
        return chain

    # -- the end of every case

    def close(self) -> None:
        """Remove what the case left; fail if a layer was written to or a mount survives."""
        for container_id in sorted(self._containers):
            self.remove(container_id)
        for diff_id, recorded in self._layers.items():
            now = manifest(self.store.layer_path(diff_id))
            if now != recorded:
                lines = "\n".join(f"  {line}" for line in diff_manifests(recorded, now))
                self.fail(f"layer {diff_id} changed after import: drivers must never write "
                          f"into layers (first tree: as imported, second: now)\n{lines}")
        leaked = mounts_under(self.root)
        for point in reversed(leaked):
            umount2(point, MNT_DETACH)
        if leaked:
            self.fail(f"mounts left on the host: {leaked}")

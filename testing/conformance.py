"""A conformance suite for pydock storage drivers, modelled on containerd's snapshotter testsuite.

Run it against any registered driver, built-in or installed from a plugin distribution::

    pytest --pyargs pydock.testing --pydock-driver mydriver     # repeatable; as root
    pytest --pyargs pydock.testing                              # the three built-in drivers

or from Python, for a driver class that is not registered (a test of your own)::

    from pydock.testing.conformance import CASES, run_case
    for case in CASES:
        run_case(case, "mydriver", tmp_path / case.name,
                 factory=lambda root: MyDriver(driver_home(root, "mydriver")))

Storage roots live under pytest's temporary directory: ``--basetemp /mnt/btrfs/t`` puts them on
the filesystem a driver needs.

Each case gets a fresh storage root and a :class:`Harness` around one driver instance. Layers
are made the way containerd makes snapshots, through the driver under test: a container is
prepared on the chain so far, the case's changes (*appliers*, as in continuity's ``fstest``)
are applied inside its mounted root, and its changes become the next layer exactly as ``pydock
commit`` makes one (the driver's ``changes_dir()``, or the core's naive differ). The same
appliers are applied to a plain "flat" directory. The driver's tree is compared with the flat
one, with :func:`pydock.testing.manifest.manifest` (type, mode, owner, size, content, mtime of
files, symlink target, device numbers, hardlink groups, user.* and trusted.* xattrs), at every
step: in each container before and after its changes, and on a fresh container of the finished
chain. After every case, each layer must be byte for byte what it was when imported (a driver
never writes into layers), and no mount may be left under the storage root.

A case is skipped only when the driver's ``available()`` says no, with its reason; the case
``available_explains_itself`` runs anyway. Files written by an applier get a whole-second
mtime that advances by one second per layer: deterministic, so that the reference and the
container agree; whole seconds, because layer tars carry no finer times; advancing, as a clock
does, because the core's naive differ (like docker's) notices a rewritten file of unchanged
size by its mtime only.

Cases (containerd's, with the same meaning, then pydock's own):

- ``basic``: a file, a directory tree; then a file added, one rewritten, a subtree removed.
- ``layer_file_update``: a rewrite of the same size; a mode-only change; an mtime-only change.
- ``remove_directory_in_lower_layer``: a lower directory removed and recreated with new content.
- ``chown``: owner changes on a lower directory chain and file.
- ``directory_permission_on_commit``: directories chowned, removed and recreated over 3 layers.
- ``deleted_files_in_child_snapshot``: a lower file deleted, then an empty layer on top.
- ``move_file_from_lower_layer``: lower files moved by link-and-unlink; a lower tree removed.
- ``rename``: a lower directory renamed; a file renamed over another; a file renamed.
- ``layers_128``: 128 layers, each adding and overwriting files and replacing a directory.
- ``view_readonly``: a container mounted with "ro" added to its mounts refuses writes (EROFS).
- ``root_permission``: the container's "/" has the mode and owner of the image's top layer.
- ``setuid_setgid_sticky``: the special mode bits, set and cleared by chown, on files and dirs.
- ``hardlinks``: hardlink groups made in a layer, thinned by removals, rewritten in place.
- ``xattrs``: user.* xattrs on files and directories, added and changed in a later layer.
- ``devices_and_fifos``: character devices and fifos created, changed and removed.
- ``opaque_directory_replacement``: a lower directory removed and recreated, a subdirectory of
  the same name inside: no lower entry may reappear, in that layer or any later one.
- ``file_to_dir_and_dir_to_file``: files, directories and symlinks replaced by other types.
- ``no_mount_left_after_remove``: the host's mount table holds nothing under the storage root,
  and nothing named after the container is left in the driver's directory.
- ``remove_twice_is_harmless``: a second ``remove`` is not an error and harms no other container.
- ``remove_without_prepare_is_harmless``: ``remove`` of an id never prepared is not an error.
- ``prepare_twice_fails``: ``FileExistsError`` or ``PydockError``; the first container survives.
- ``usage_is_plausible``: an idle container uses under 1 MiB; writing 1 MiB adds 1 to 4 MiB.
- ``diff_round_trips``: the A/C/D changes the core reports are exactly what the appliers did.
- ``concurrent_prepare``: 10 containers prepared by 10 threads at once are each independent.
- ``available_explains_itself``: a "no" from ``available()`` comes with a sentence; the check
  creates nothing.
- ``overlay_mount_options``: every overlay mount the driver returns turns off index,
  redirect_dir and metacopy, and the live mount has them off, with one layer and with options
  past one page (:mod:`pydock.testing.overlay_options`).

Carve-outs, where a driver is told apart by name and its documented behaviour is checked instead:

- ``overlay``, ``rename``: without redirect_dir (pydock never enables it: a redirect cannot be
  carried by a layer tar) rename(2) of a directory from a lower layer fails with EXDEV. The case
  asserts EXDEV, then moves the directory the way ``mv`` falls back to: copy, then remove.
- ``overlay``, ``hardlinks``: without index=on (pydock never enables it) rewriting one name of a
  file that has several names in a lower layer copies that name up alone, so the link breaks:
  the other names keep the old content. The case asserts exactly that.
- ``bind``, ``concurrent_prepare``: every container of an image shares one root (the driver's
  documented purpose), so a write in one *must* be visible in all the others.

Not checked, because no layer can express it: a new hardlink to a file of a lower layer (layer
tars link only within themselves; containerd's cases avoid it too), the mode and owner of "/"
set inside a container (layer tars carry no entry for the root), and trusted.* xattrs (left out
of layer tars).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import os
import secrets
import shutil
import stat
import tarfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, Protocol

from pydock.core.containers import commit as snapshots
from pydock.core.driver import Mount, StorageDriver
from pydock.core.errors import PydockError
from pydock.core.images.store import ImageStore
from pydock.core.layers.treecopy import copy_tree
from pydock.core.plugins import DriverRegistry, availability_of, driver_home
from pydock.core.runtime.mounted import in_container_root
from pydock.core.syscalls import MNT_DETACH, umount2
from pydock.testing.cli import mounts_under
from pydock.testing.layers import import_built_layers
from pydock.testing.manifest import Entry, diff_manifests, manifest
from pydock.testing.overlay_options import overlay_mount_options

BUILTIN_DRIVERS = ("overlay", "copy", "bind")
# Drivers whose container root is the kernel's overlay mount, without redirect_dir or index.
KERNEL_OVERLAY_DRIVERS = frozenset({"overlay"})
# Drivers that share one root between all containers of an image, by design.
SHARED_ROOT_DRIVERS = frozenset({"bind"})

# The clock appliers see: layer N of a case is written at BASE_TIME + N seconds.
BASE_TIME = 1_700_000_000
_MIB = 1 << 20
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


def _empty_layer(tar: tarfile.TarFile) -> None:
    """No members: the layer every case's chain starts from (an image needs one layer)."""


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
        self.base = self.import_tar(_empty_layer)

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

    def import_tar(self, build: Callable[[tarfile.TarFile], None]) -> str:
        """A layer from a tar written by ``build`` (the image-import path); its diff_id."""
        [diff_id] = import_built_layers(self.store, [build])
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


# -- the cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One named check; ``needs_available=False`` runs even where the driver cannot work."""

    name: str
    check: Callable[[Harness], None]
    needs_available: bool = True

    def __str__(self) -> str:
        return self.name


CASES: list[Case] = []


_Check = Callable[[Harness], None]


def _case(needs_available: bool = True) -> Callable[[_Check], _Check]:
    def register(check: _Check) -> _Check:
        CASES.append(Case(check.__name__, check, needs_available))
        return check
    return register


@_case()
def basic(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/foo", b"foo\n", 0o777), CreateDir("/a"), CreateDir("/a/b"),
         CreateDir("/a/b/c")],
        [CreateFile("/bar", b"bar\n", 0o777), CreateFile("/foo", b"bar\n", 0o777),
         Remove("/a/b")],
    )


@_case()
def layer_file_update(h: Harness) -> None:
    # docker#21555: a rewrite of the same size must not be lost between layers.
    h.check_layers(
        [CreateDir("/etc", 0o700), CreateFile("/etc/hosts", b"mydomain 10.0.0.1"),
         CreateFile("/etc/profile", b"PATH=/usr/bin"), CreateFile("/etc/motd", b"hi\n")],
        # A touch back in time (as tar, cp -p or touch -d do) changes nothing but the mtime.
        [CreateFile("/etc/hosts", b"mydomain 10.0.0.2"),
         CreateFile("/etc/profile", b"PATH=/usr/bin", 0o666), CreateDir("/root", 0o700),
         CreateFile("/root/.bashrc", b"PATH=/usr/sbin:/usr/bin"),
         SetMtime("/etc/motd", BASE_TIME - 86400)],
    )


@_case()
def remove_directory_in_lower_layer(h: Harness) -> None:
    # docker#25244
    h.check_layers(
        [CreateDir("/lib", 0o700), CreateFile("/lib/hidden")],
        [Remove("/lib"), CreateDir("/lib", 0o700), CreateFile("/lib/not-hidden")],
        [CreateFile("/lib/newfile")],
    )


@_case()
def chown(h: Harness) -> None:
    # docker#20240, #24913, #28391
    h.check_layers(
        [CreateDir("/opt", 0o700), CreateDir("/opt/a", 0o700), CreateDir("/opt/a/b", 0o700),
         CreateFile("/opt/a/b/file.txt", b"hello")],
        [Chown("/opt", 1, 1), Chown("/opt/a", 1, 1), Chown("/opt/a/b", 1, 1),
         Chown("/opt/a/b/file.txt", 1, 1)],
    )


@_case()
def directory_permission_on_commit(h: Harness) -> None:
    # docker#27298
    h.check_layers(
        [CreateDir("/dir1", 0o700), CreateDir("/dir2", 0o700), CreateDir("/dir3", 0o700),
         CreateDir("/dir4", 0o700), CreateFile("/dir4/f1", b"..."), CreateDir("/dir5", 0o700),
         CreateFile("/dir5/f1", b"..."), Chown("/dir1", 1, 1), Chown("/dir2", 1, 1),
         Chown("/dir3", 1, 1), Chown("/dir5", 1, 1), Chown("/dir5/f1", 1, 1)],
        [Chown("/dir2", 0, 0), Remove("/dir3"), Chown("/dir4", 1, 1), Chown("/dir4/f1", 1, 1)],
        [CreateDir("/dir3", 0o700), Chown("/dir3", 1, 1), Remove("/dir5"),
         CreateDir("/dir5", 0o700), Chown("/dir5", 1, 1)],
    )


@_case()
def deleted_files_in_child_snapshot(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/foo", b"foo\n", 0o777), CreateFile("/foobar", b"foobar\n", 0o777)],
        [Remove("/foobar")],
        [],
    )


@_case()
def move_file_from_lower_layer(h: Harness) -> None:
    h.check_layers(
        [CreateDir("/dir1", 0o700), CreateFile("/dir1/f1", b"Hello"), CreateDir("/dir2", 0o700),
         CreateFile("/dir2/f2", b"...")],
        [CreateDir("/dir3", 0o700), CreateFile("/dir3/f1", b"Hello"), Remove("/dir1"),
         Hardlink("/dir2/f2", "/dir3/f2"), Remove("/dir2/f2")],
    )


@_case()
def rename(h: Harness) -> None:
    # docker#25409
    lower: list[Applier] = [
        CreateDir("/dir1", 0o700), CreateFile("/dir1/inside", b"moves with its directory"),
        CreateDir("/somefiles", 0o700), CreateFile("/somefiles/f1", b"was here first!"),
        CreateFile("/somefiles/f2", b"nothing interesting")]
    chain = h.check_layers(lower)
    move_dir: Applier = Rename("/dir1", "/dir2")
    if h.driver_name in KERNEL_OVERLAY_DRIVERS:
        probe = h.prepare(chain.ids)

        def rename_dir(root: str) -> int:
            try:
                os.rename(os.path.join(root, "dir1"), os.path.join(root, "dir2"))
            except OSError as exc:
                return exc.errno or 0
            return 0

        result = h.run(probe, chain.ids, rename_dir)
        h.remove(probe)
        if result != errno.EXDEV:
            h.fail(f"rename(2) of a directory from a lower layer returned "
                   f"{errno.errorcode.get(result, 'success')}; overlay without redirect_dir "
                   "returns EXDEV (with a redirect, commit could not make a layer of it)")
        move_dir = MoveByCopy("/dir1", "/dir2")
    h.check_layers(
        [move_dir, CreateFile("/somefiles/f1-overwrite", b"new content 1"),
         Rename("/somefiles/f1-overwrite", "/somefiles/f1"),
         Rename("/somefiles/f2", "/somefiles/f3")],
        on=chain,
    )


@_case()
def layers_128(h: Harness) -> None:
    # A small file per layer shows that every one of the 128 is mounted; a file rewritten now
    # and then, that the topmost copy wins. That is all containerd's case shows too, and its
    # heavier layers would cost much more here: committing a layer on a chain of n through
    # the core's naive differ costs O(visible entries x n).
    layers: list[list[Applier]] = [[CreateFile("/bottom", b"way at the bottom\n", 0o777),
                                    CreateFile("/overwriteme", b"FIRST!\n", 0o777)]]
    layers += [[CreateFile(f"/file-{i:03d}", b"same\n"),
                *([CreateFile("/overwriteme", f"{i} WAS HERE!\n".encode())] if i % 42 == 0
                  else [])]
               for i in range(1, 128)]
    h.check_layers(*layers)


@_case()
def view_readonly(h: Harness) -> None:
    chain = h.check_layers([CreateFile("/existing", b"x\n")]).ids
    container_id = h.prepare(chain)

    writes: list[Applier] = [CreateFile("/testfile", b"testcontent"),
                             CreateFile("/existing", b"y\n"), Remove("/existing")]

    def try_writes(root: str) -> list[str]:
        outcomes = []
        for applier in writes:
            try:
                applier.apply(Path(root), BASE_TIME)
                outcomes.append("succeeded")
            except OSError as exc:
                outcomes.append(errno.errorcode.get(exc.errno or 0, "error"))
        return outcomes

    outcomes = h.run(container_id, chain, try_writes, read_only=True)
    if "succeeded" in outcomes:
        h.fail(f"writes to a root mounted with 'ro' ({', '.join(map(str, writes))}): "
               f"{outcomes}; each must fail (EROFS)")
    seen = h.view(container_id, chain)
    if "/testfile" in seen or seen["/existing"].size != 2:
        h.fail("a refused write changed the container's root")
    h.remove(container_id)


@_case()
def root_permission(h: Harness) -> None:
    # An image's "/" comes from its top layer, whatever the layers below say (overlay's rule,
    # which the other drivers must match). pydock commit makes no entry for "/", so the layers
    # here come from tars, as image import gets them.
    def first(tar: tarfile.TarFile) -> None:
        _tar_dir(tar, ".", 0o750, 7, 8)
        _tar_file(tar, "first", b"1\n")

    def second(tar: tarfile.TarFile) -> None:
        _tar_dir(tar, ".", 0o711, 0, 5)
        _tar_file(tar, "second", b"2\n")

    # What the tars say, done to the reference directory.
    layers: list[tuple[Callable[[tarfile.TarFile], None], list[Applier]]] = [
        (first, [Chmod("/", 0o750), Chown("/", 7, 8), CreateFile("/first", b"1\n")]),
        (second, [Chmod("/", 0o711), Chown("/", 0, 5), CreateFile("/second", b"2\n")])]
    flat = h.flat()
    chain = [h.base]
    for number, (build, appliers) in enumerate(layers, start=1):
        chain.append(h.import_tar(build))
        apply_all(appliers, flat, BASE_TIME)
        container_id = h.prepare(chain)
        h.check_equal(h.view(container_id, chain), manifest(flat),
                      f"a container on imported layer {number} of 2")
        h.remove(container_id)


def _tar_dir(tar: tarfile.TarFile, name: str, mode: int, uid: int, gid: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, mode, uid, gid, 0
    tar.addfile(info)


def _tar_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, BASE_TIME
    tar.addfile(info, io.BytesIO(data))


@_case()
def setuid_setgid_sticky(h: Harness) -> None:
    h.check_layers(
        [CreateDir("/bin"), CreateFile("/bin/su", b"#!/bin/sh\n", 0o4755),
         CreateFile("/bin/wall", b"#!/bin/sh\n"), Chown("/bin/wall", 0, 5),
         Chmod("/bin/wall", 0o2755), CreateDir("/tmp", 0o1777), CreateDir("/shared", 0o2775),
         Chown("/shared", 0, 100)],
        # Created in a setgid directory: group 100 and, for a directory, the setgid bit, both
        # from the kernel. chown clears setuid, so the file is chmod'ed again after it.
        [CreateFile("/shared/new", b"group from the directory\n"), CreateDir("/shared/sub"),
         Chown("/bin/su", 1, 1), Chmod("/bin/su", 0o4750), Chmod("/tmp", 0o1770),
         Chmod("/bin/wall", 0o755)],
    )


@_case()
def hardlinks(h: Harness) -> None:
    chain = h.check_layers(
        [CreateFile("/a", b"three names\n"), Hardlink("/a", "/b"), CreateDir("/dir"),
         Hardlink("/a", "/dir/c"), CreateFile("/x", b"two names\n"), Hardlink("/x", "/y")],
        # Removing a name leaves the others linked; a group made within one layer is kept.
        [Remove("/y"), Remove("/b"), CreateFile("/n", b"new pair\n"), Hardlink("/n", "/m")],
    )
    rewrite: list[Applier] = [CreateFile("/a", b"rewritten in place\n")]
    if h.driver_name not in KERNEL_OVERLAY_DRIVERS:
        h.check_layers(rewrite, on=chain)
        return
    probe = h.prepare(chain.ids)

    def rewrite_one_name(root: str) -> list[Any]:
        apply_all(rewrite, Path(root), BASE_TIME)
        a, c = os.lstat(os.path.join(root, "a")), os.lstat(os.path.join(root, "dir/c"))
        return [a.st_ino == c.st_ino, Path(root, "dir/c").read_bytes().decode()]

    same_inode, other_content = h.run(probe, chain.ids, rewrite_one_name)
    h.remove(probe)
    if same_inode or other_content != "three names\n":
        h.fail("rewriting /a, which shares its inode with /dir/c in a lower layer, must copy "
               "/a up alone (overlay without index=on breaks the link); instead /dir/c "
               f"{'is still the same inode' if same_inode else 'changed'}: {other_content!r}")


@_case()
def xattrs(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/f", b"tagged\n"), SetXattr("/f", "user.color", b"blue"),
         CreateDir("/d"), SetXattr("/d", "user.kind", b"directory"),
         SetXattr("/d", "user.binary", bytes(range(256)))],
        [CreateFile("/g", b"new\n"), SetXattr("/g", "user.fresh", b""),
         SetXattr("/f", "user.color", b"red"), SetXattr("/f", "user.more", b"1"),
         SetXattr("/d", "user.kind", b"still a directory")],
    )


@_case()
def devices_and_fifos(h: Harness) -> None:
    h.check_layers(
        [CreateDir("/dev"), Mknod("/dev/null2", 1, 3), Mknod("/dev/zero2", 1, 5, 0o640),
         Mkfifo("/pipe"), Mkfifo("/dev/initctl", 0o600)],
        [Remove("/pipe"), Mkfifo("/pipe2", 0o620), Chmod("/dev/null2", 0o600),
         Chown("/dev/zero2", 0, 6), Remove("/dev/initctl"), Mknod("/dev/initctl", 4, 9)],
    )


@_case()
def opaque_directory_replacement(h: Harness) -> None:
    h.check_layers(
        [CreateDir("/d"), CreateFile("/d/a", b"lower\n"), CreateDir("/d/sub"),
         CreateFile("/d/sub/b", b"lower\n"), CreateDir("/d/sub/deeper"),
         CreateFile("/d/sub/deeper/c", b"lower\n")],
        [Remove("/d"), CreateDir("/d", 0o700), CreateFile("/d/c", b"upper\n"),
         CreateDir("/d/sub", 0o750)],
        [CreateFile("/d/sub/z", b"later\n"), CreateFile("/d/a2", b"later\n")],
    )


@_case()
def file_to_dir_and_dir_to_file(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/f", b"a file\n"), CreateDir("/d"), CreateFile("/d/x", b"x\n"),
         CreateDir("/d/sub"), CreateFile("/d/sub/y", b"y\n"), Symlink("/f", "/l")],
        [Remove("/f"), CreateDir("/f"), CreateFile("/f/inner", b"inside\n"),
         Remove("/d"), CreateFile("/d", b"now a file\n"), Remove("/l"), CreateDir("/l")],
        [Remove("/f"), CreateFile("/f", b"a file again\n"), Remove("/d"), CreateDir("/d"),
         CreateFile("/d/new", b"only this\n"), Remove("/l"), Symlink("d/new", "/l")],
    )


@_case()
def no_mount_left_after_remove(h: Harness) -> None:
    chain = h.check_layers([CreateFile("/f", b"x\n")]).ids
    container_id = h.prepare(chain)
    h.run(container_id, chain, partial(_apply_at, [CreateFile("/written", b"y\n")]))
    if mounts_under(h.root):
        h.fail(f"mounts on the host while the container exists: {mounts_under(h.root)} (the "
               "core mounts in the container's own namespace; a driver must mount nothing)")
    h.remove(container_id)
    if mounts_under(h.root):
        h.fail(f"mounts on the host after remove: {mounts_under(h.root)}")
    left = [str(p) for p in h.driver.home.rglob("*") if container_id in p.name]
    if left:
        h.fail(f"remove left files named after the container: {left}")


@_case()
def remove_twice_is_harmless(h: Harness) -> None:
    chain = h.check_layers([CreateFile("/f", b"x\n")]).ids
    other, doomed = h.prepare(chain), h.prepare(chain)
    before = h.view(other, chain)
    h.remove(doomed)
    try:
        h.driver.remove(doomed)
    except Exception as exc:
        h.fail(f"a second remove of the same container raised {type(exc).__name__}: {exc}")
    h.check_equal(h.view(other, chain), before, "another container after a double remove")


@_case()
def remove_without_prepare_is_harmless(h: Harness) -> None:
    never = secrets.token_hex(32)

    def remove_never_prepared(when: str) -> None:
        try:
            h.driver.remove(never)
        except Exception as exc:
            h.fail(f"remove of a container never prepared, {when}, raised "
                   f"{type(exc).__name__}: {exc}")

    remove_never_prepared("before the driver's directory exists")
    h.prepare([h.base])
    remove_never_prepared("beside a prepared container")


@_case()
def prepare_twice_fails(h: Harness) -> None:
    chain = h.check_layers([CreateFile("/f", b"x\n")]).ids
    container_id = h.prepare(chain)
    h.run(container_id, chain, partial(_apply_at, [CreateFile("/mine", b"y\n")]))
    before = h.view(container_id, chain)
    try:
        h.driver.prepare(container_id, h.layer_paths(chain))
    except (FileExistsError, PydockError):
        pass
    except Exception as exc:
        h.fail(f"a second prepare with the same id raised {type(exc).__name__}: {exc}; "
               "expected FileExistsError or PydockError")
    else:
        h.fail("a second prepare with the same id succeeded; it must raise FileExistsError")
    h.check_equal(h.view(container_id, chain), before,
                  "the first container after a failed second prepare")


@_case()
def usage_is_plausible(h: Harness) -> None:
    chain = h.check_layers([CreateFile("/f", b"x\n"), CreateDir("/d")]).ids
    container_id = h.prepare(chain)
    idle = h.driver.usage(container_id)
    if idle.bytes >= _MIB:
        h.fail(f"an idle container of a 2-entry image uses {idle.bytes} bytes; expected < 1 MiB")

    def write_mib(root: str) -> None:
        fd = os.open(os.path.join(root, "mib"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, os.urandom(_MIB))  # random: no filesystem can compress it away
            os.fsync(fd)
        finally:
            os.close(fd)

    h.run(container_id, chain, write_mib)
    used = h.driver.usage(container_id)
    grown = used.bytes - idle.bytes
    if not _MIB <= grown <= 4 * _MIB:
        h.fail(f"writing 1 MiB into the container changed its usage by {grown} bytes "
               f"({idle.bytes} -> {used.bytes}); expected 1 to 4 MiB")
    if used.inodes <= idle.inodes:
        h.fail(f"a new file did not add an inode to the usage ({idle.inodes} -> {used.inodes})")


@_case()
def diff_round_trips(h: Harness) -> None:
    chain = h.check_layers(
        [CreateFile("/keep", b"k\n"), CreateFile("/change", b"old\n"), CreateFile("/chmod-me"),
         CreateFile("/gone", b"g\n"), CreateDir("/gonedir"), CreateFile("/gonedir/x"),
         CreateDir("/gonedir/sub"), CreateFile("/gonedir/sub/y"), CreateDir("/dir"),
         CreateFile("/dir/inner"), CreateFile("/moved", b"m\n")]).ids
    container_id = h.prepare(chain)
    appliers: list[Applier] = [
        CreateFile("/new", b"n\n"), CreateFile("/change", b"new content\n"),
        Chmod("/chmod-me", 0o600), Remove("/gone"), Remove("/gonedir"), CreateDir("/newdir"),
        CreateFile("/newdir/f"), CreateFile("/dir/added"), Rename("/moved", "/renamed")]
    h.run(container_id, chain, partial(_apply_at, appliers))
    expected = {("A", "/new"), ("C", "/change"), ("C", "/chmod-me"), ("D", "/gone"),
                ("D", "/gonedir"), ("A", "/newdir"), ("A", "/newdir/f"), ("C", "/dir"),
                ("A", "/dir/added"), ("D", "/moved"), ("A", "/renamed")}
    reported = h.changes(container_id, chain)
    if reported != expected:
        missing = "".join(f"\n  {k} {p}" for k, p in sorted(expected - reported))
        extra = "".join(f"\n  {k} {p}" for k, p in sorted(reported - expected))
        h.fail("the changes the core reports differ from what was done"
               + (f"\nmissing:{missing}" if missing else "")
               + (f"\nunexpected:{extra}" if extra else ""))


@_case()
def concurrent_prepare(h: Harness) -> None:
    chain = h.check_layers([CreateFile("/shared-file", b"from the image\n")]).ids
    ids = [secrets.token_hex(32) for _ in range(10)]
    # Threads, joined before anything forks: in_container_root forks, and a fork while other
    # threads run may copy a lock they hold.
    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        outcomes = list(pool.map(lambda i: _try(lambda: h.prepare(chain, i)), ids))
    failed = [message for message in outcomes if message]
    if failed:
        h.fail(f"{len(failed)} of {len(ids)} concurrent prepares failed: {failed[0]}")
    for index, container_id in enumerate(ids):
        h.run(container_id, chain, partial(_apply_at, [CreateFile(f"/mine-{index}", b"mine\n")]))
    shared = h.driver_name in SHARED_ROOT_DRIVERS
    everyone = {f"mine-{index}" for index in range(len(ids))}
    for index, container_id in enumerate(ids):
        names = set(h.run(container_id, chain, os.listdir))
        expected = {"shared-file"} | (everyone if shared else {f"mine-{index}"})
        if names != expected:
            h.fail(f"container {index} of {len(ids)} shows {sorted(names)}; expected "
                   f"{sorted(expected)} ("
                   + ("this driver's containers share one root"
                      if shared else "each container's writes are its own") + ")")


def _apply_at(appliers: Sequence[Applier], root: str) -> None:
    apply_all(appliers, Path(root), BASE_TIME)


def _try(action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


@_case(needs_available=False)
def available_explains_itself(h: Harness) -> None:
    home = h.driver.home
    existed = home.exists()
    availability = availability_of(type(h.driver), home)
    if not existed and home.exists():
        h.fail(f"available() created {home}; it must create nothing")
    if not availability.ok and len(availability.reason.split()) < 2:
        h.fail(f"available() says no with the reason {availability.reason!r}; a user needs a "
               "sentence saying why and, where possible, what to do")


_case()(overlay_mount_options)  # in its own module: pydock.testing.overlay_options


# -- running a case -----------------------------------------------------------------------------


def run_case(case: Case, driver_name: str, work: Path,
             factory: DriverFactory | None = None) -> None:
    """Run one case against a fresh storage root under ``work`` (created if missing).

    ``factory`` builds the driver from the storage root; by default the driver registered as
    ``driver_name``. Raises :class:`DriverUnavailable` when the driver says it cannot work
    here (except for ``available_explains_itself``) and :class:`ConformanceFailure` when the
    driver does not conform.
    """
    if os.geteuid() != 0:
        raise ConformanceFailure("the conformance suite needs root: it mounts, chowns and "
                                 "makes device nodes")
    driver = (factory or registry_factory(driver_name))(work / "root")
    if case.needs_available:
        availability = availability_of(type(driver), driver.home)
        if not availability.ok:
            raise DriverUnavailable(f"{driver_name}: {availability.reason}")
    work.mkdir(parents=True, exist_ok=True)
    harness = Harness(driver_name, driver, work / "root", work, case.name)
    try:
        case.check(harness)
    except BaseException:
        # The case's own failure is the one worth reading; cleanup trouble must not hide it.
        with contextlib.suppress(Exception):
            harness.close()
        raise
    harness.close()

"""The storage-driver contract: everything a driver author needs to know.

A storage driver decides where a container's root filesystem comes from. The
core runtime owns namespaces, mounts and pivot_root; the driver owns bytes on
disk. The two meet in exactly one place: a driver *describes* the mounts that
make up a container's root (:class:`Mount`), and the core performs them inside
the container's own mount namespace. A driver never mounts anything on the
host, so a runtime killed at any moment leaks no host mounts: when the last
process of a container exits, the kernel tears its mounts down.

The model
---------
An *image* is an ordered chain of *layers*, bottom first. Every layer is a
plain directory in the kernel's overlay format, whatever driver later uses
it: a deleted file is a character device 0/0 (a *whiteout*), a directory that
hides everything below it carries the xattr ``trusted.overlay.opaque=y``.
Layers are shared by every image and container that uses them and are
**read-only to drivers**: a driver that writes into a layer directory corrupts
every other container of that image (the bind driver is the one, documented,
exception: it exists to show why that is a bad idea).

A *container* gets a private writable root made from an image. Drivers key
everything by the container's ``container_id`` (64 hex digits, unique for the
life of the storage root) and keep their files under ``self.home``, a
directory the core gives each driver (``<root>/storage/<driver name>``).

The life of a container, from the driver's side
-----------------------------------------------
1. ``pydock run`` resolves the image, creates the container's record, then
   calls :meth:`StorageDriver.prepare` with the container id and the image's
   layers. The driver creates whatever the container needs (an upper and a
   work directory, a full copy, nothing at all) and must be able to undo it
   with :meth:`remove` even if ``prepare`` itself failed half-way.
2. Just before starting the container, the core calls :meth:`mounts` and
   performs the returned mounts, in order, on ``rootfs_dir(container_id)``
   inside the container's fresh mount namespace. :meth:`mounts` must be cheap
   and must not change anything: it is called on every start.
3. While the container exists, :meth:`usage`, :meth:`metadata` and
   :meth:`changes_dir` may be called at any time (``pydock inspect``, ``diff``,
   ``commit``, ``pydock bench``).
4. ``pydock rm`` calls :meth:`remove` after the container's processes are
   gone. ``remove`` is idempotent: removing twice, or removing a container
   whose ``prepare`` never ran or failed, is not an error. After a crash,
   ``prepare`` or ``remove`` may have stopped anywhere; ``pydock prune``
   then calls :meth:`remove` for every entry of ``home`` named like a
   container id (64 hex digits) that no container's record names.

The driver a container was created with is recorded in its state and used for
everything later done to it, so a driver must keep understanding containers
it created earlier.

Registering a driver
--------------------
Drivers are plugins. A module (built-in or in a third-party distribution
declaring ``[project.entry-points.pydock] mydriver = "mypackage.plugin"``)
implements the ``register_storage_drivers`` hook::

    from pydock.core import hookimpl
    from pydock.core.driver import StorageDriver

    class MyDriver(StorageDriver):
        name = "mine"
        ...

    @hookimpl
    def register_storage_drivers(register):
        register(MyDriver)

A driver that cannot work on this host says so from :meth:`available`, with a
reason a user can act on; ``pydock storage ls`` shows it, and ``pydock run
--storage`` refuses it with that reason instead of failing half-way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, NamedTuple

from pydock.core.files import DIR_FLAGS, TreeWalk, remove_tree, sha256_hex


# The value types are NamedTuples, not dataclasses: they are defined on the way to every
# container's start, where a frozen dataclass costs most of a millisecond each to build.
class Mount(NamedTuple):
    """One mount the core performs inside the container's mount namespace.

    ``type`` is a filesystem type for mount(2) (``"overlay"``, ``"tmpfs"``, ...)
    or ``"bind"`` for a bind mount of ``source``. ``options`` are mount(8)-style:
    the generic flags ``ro``, ``rw``, ``nosuid``, ``nodev``, ``noexec`` and
    ``rbind`` are turned into mount flags by the core, everything else
    (``lowerdir=...``, ``size=...``) is passed to the filesystem as data.
    ``target`` is a path inside the container's root; ``"/"`` is the root itself.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()
    target: str = "/"


class Availability(NamedTuple):
    """Whether a driver can work on this host, and if not, why (in words a user can act on)."""

    ok: bool
    reason: str = ""


class Usage(NamedTuple):
    """Disk used by one container's own storage, excluding the shared image layers."""

    bytes: int
    inodes: int


class StorageDriver:
    """Base class of every storage driver. Subclass it, set :attr:`name`, implement
    :meth:`prepare`, :meth:`mounts` and :meth:`remove`.

    ``home`` is the driver's private directory (it may not exist yet: create it
    in :meth:`prepare`). One driver instance may serve many containers; keep no
    per-container state in memory, because every pydock command is a new process.
    The core makes an instance as ``cls(home)``: a subclass that overrides ``__init__``
    takes ``home`` and passes it on to ``super().__init__``.
    """

    name: ClassVar[str]

    def __init__(self, home: Path) -> None:
        self.home = home

    def __repr__(self) -> str:
        return f"{type(self).__name__}(home={str(self.home)!r})"

    @classmethod
    def available(cls, home: Path) -> Availability:
        """Can this driver work with its data under ``home`` on this host?

        Called by ``pydock storage ls`` and before every ``prepare``. Must be
        cheap and must not create anything. The default says yes.
        """
        return Availability(True)

    def container_dir(self, container_id: str) -> Path:
        """Where this driver keeps one container's files (a convention, not a rule)."""
        return self.home / container_id

    def rootfs_dir(self, container_id: str) -> Path:
        """The empty directory the core mounts the container's root on.

        It lives on the host but stays empty there: the mounts happen inside the
        container's mount namespace. Drivers create it in :meth:`prepare`.
        """
        return self.container_dir(container_id) / "merged"

    def prepare(self, container_id: str, layers: Sequence[Path]) -> None:
        """Create the storage of a new container from ``layers`` (bottom first).

        Must create :meth:`rootfs_dir`. Must never write into a layer directory.
        Calling ``prepare`` twice with the same id is an error (``FileExistsError``).
        """
        raise NotImplementedError

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        """The mounts, in order, that make up the container's root. Changes nothing."""
        raise NotImplementedError

    def remove(self, container_id: str) -> None:
        """Delete everything :meth:`prepare` created. Idempotent; never touches layers."""
        with contextlib.suppress(FileNotFoundError):
            remove_tree(self.container_dir(container_id))

    def usage(self, container_id: str) -> Usage:
        """Disk used by the container's own files (allocated blocks, not apparent size)."""
        return tree_usage(self.container_dir(container_id))

    def changes_dir(self, container_id: str) -> Path | None:
        """A directory in the layer format holding exactly the container's changes, if the
        driver keeps one (overlay's upper directory); None otherwise.

        With one, ``diff`` and ``commit`` cost what the change costs: the core reads this
        directory only. Without, the core compares the whole mounted root with the image
        (docker's naive differ) and builds the layer from that.
        """
        return None

    def metadata(self, container_id: str, layers: Sequence[Path]) -> dict[str, str]:
        """Driver-specific facts for ``pydock inspect`` (docker's ``GraphDriver.Data``)."""
        return {"RootDir": str(self.rootfs_dir(container_id))}

    def make_home(self) -> None:
        """Create :attr:`home` readable by root only: container files are private."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)


def chain_key(layers: Sequence[Path]) -> str:
    """A short name, stable across runs, for a layer chain: for drivers that keep one thing
    per image (a flattened tree, a base snapshot) and share it between its containers."""
    return sha256_hex("\n".join(map(str, layers)).encode())[:16]


def tree_usage(top: Path) -> Usage:
    """Allocated bytes and inode count of a tree, each inode counted once (hardlinks)."""
    seen: set[int] = set()
    total = 0
    top_fd = os.open(top, DIR_FLAGS)
    try:
        stats = [os.fstat(top_fd)]
        stats.extend(entry.st for entry in TreeWalk(top_fd, ordered=False)
                     if entry.st and not entry.leaving)
    finally:
        os.close(top_fd)
    for st in stats:
        if st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_blocks * 512
    return Usage(bytes=total, inodes=len(seen))

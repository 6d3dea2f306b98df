"""The conformance suite's named cases and its runner (containerd's
``snapshots/testsuite/testsuite.go``). The regression cases, each citing the issue it guards
against, are in :mod:`pydock.testing.suite.issues`; what cases are written with, in
:mod:`pydock.testing.suite.helpers`. :data:`CASES` lists them all in one order.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydock.core.errors import PydockError
from pydock.core.plugins import availability_of
from pydock.testing.cli import mounts_under
from pydock.testing.manifest import manifest
from pydock.testing.suite import issues
from pydock.testing.suite.helpers import (
    BASE_TIME,
    KERNEL_OVERLAY_DRIVERS,
    SHARED_ROOT_DRIVERS,
    Applier,
    Chmod,
    Chown,
    ConformanceFailure,
    CreateDir,
    CreateFile,
    DriverFactory,
    DriverUnavailable,
    Hardlink,
    Harness,
    Mkfifo,
    Mknod,
    Remove,
    Rename,
    SetXattr,
    Symlink,
    apply_all,
    registry_factory,
)
from pydock.testing.suite.host_mounts import host_mounts
from pydock.testing.suite.overlay_options import overlay_mount_options
from pydock.testing.tar import Member, dir_, reg

_MIB = 1 << 20


@dataclass(frozen=True)
class Case:
    """One named check; ``needs_available=False`` runs even where the driver cannot work."""

    name: str
    check: Callable[[Harness], None]
    needs_available: bool = True

    def __str__(self) -> str:
        return self.name


def basic(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/foo", b"foo\n", 0o777), CreateDir("/a"), CreateDir("/a/b"),
         CreateDir("/a/b/c")],
        [CreateFile("/bar", b"bar\n", 0o777), CreateFile("/foo", b"bar\n", 0o777),
         Remove("/a/b")],
    )


def deleted_files_in_child_snapshot(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/foo", b"foo\n", 0o777), CreateFile("/foobar", b"foobar\n", 0o777)],
        [Remove("/foobar")],
        [],
    )


def move_file_from_lower_layer(h: Harness) -> None:
    h.check_layers(
        [CreateDir("/dir1", 0o700), CreateFile("/dir1/f1", b"Hello"), CreateDir("/dir2", 0o700),
         CreateFile("/dir2/f2", b"...")],
        [CreateDir("/dir3", 0o700), CreateFile("/dir3/f1", b"Hello"), Remove("/dir1"),
         Hardlink("/dir2/f2", "/dir3/f2"), Remove("/dir2/f2")],
    )


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


def root_permission(h: Harness) -> None:
    # An image's "/" comes from its top layer, whatever the layers below say (overlay's rule,
    # which the other drivers must match). pydock commit makes no entry for "/", so the layers
    # here come from tars, as image import gets them.
    # Each layer's tar, and what it says done to the reference directory.
    layers: list[tuple[list[Member], list[Applier]]] = [
        ([dir_(".", 0o750, uid=7, gid=8), reg("first", b"1\n", mtime=BASE_TIME)],
         [Chmod("/", 0o750), Chown("/", 7, 8), CreateFile("/first", b"1\n")]),
        ([dir_(".", 0o711, uid=0, gid=5), reg("second", b"2\n", mtime=BASE_TIME)],
         [Chmod("/", 0o711), Chown("/", 0, 5), CreateFile("/second", b"2\n")])]
    flat = h.flat()
    chain = [h.base]
    for number, (members, appliers) in enumerate(layers, start=1):
        chain.append(h.import_layer(members))
        apply_all(appliers, flat, BASE_TIME)
        container_id = h.prepare(chain)
        h.check_equal(h.view(container_id, chain), manifest(flat),
                      f"a container on imported layer {number} of 2")
        h.remove(container_id)


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


def xattrs(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/f", b"tagged\n"), SetXattr("/f", "user.color", b"blue"),
         CreateDir("/d"), SetXattr("/d", "user.kind", b"directory"),
         SetXattr("/d", "user.binary", bytes(range(256)))],
        [CreateFile("/g", b"new\n"), SetXattr("/g", "user.fresh", b""),
         SetXattr("/f", "user.color", b"red"), SetXattr("/f", "user.more", b"1"),
         SetXattr("/d", "user.kind", b"still a directory")],
    )


def devices_and_fifos(h: Harness) -> None:
    h.check_layers(
        [CreateDir("/dev"), Mknod("/dev/null2", 1, 3), Mknod("/dev/zero2", 1, 5, 0o640),
         Mkfifo("/pipe"), Mkfifo("/dev/initctl", 0o600)],
        [Remove("/pipe"), Mkfifo("/pipe2", 0o620), Chmod("/dev/null2", 0o600),
         Chown("/dev/zero2", 0, 6), Remove("/dev/initctl"), Mknod("/dev/initctl", 4, 9)],
    )


def opaque_directory_replacement(h: Harness) -> None:
    h.check_layers(
        [CreateDir("/d"), CreateFile("/d/a", b"lower\n"), CreateDir("/d/sub"),
         CreateFile("/d/sub/b", b"lower\n"), CreateDir("/d/sub/deeper"),
         CreateFile("/d/sub/deeper/c", b"lower\n")],
        [Remove("/d"), CreateDir("/d", 0o700), CreateFile("/d/c", b"upper\n"),
         CreateDir("/d/sub", 0o750)],
        [CreateFile("/d/sub/z", b"later\n"), CreateFile("/d/a2", b"later\n")],
    )


def file_to_dir_and_dir_to_file(h: Harness) -> None:
    h.check_layers(
        [CreateFile("/f", b"a file\n"), CreateDir("/d"), CreateFile("/d/x", b"x\n"),
         CreateDir("/d/sub"), CreateFile("/d/sub/y", b"y\n"), Symlink("/f", "/l")],
        [Remove("/f"), CreateDir("/f"), CreateFile("/f/inner", b"inside\n"),
         Remove("/d"), CreateFile("/d", b"now a file\n"), Remove("/l"), CreateDir("/l")],
        [Remove("/f"), CreateFile("/f", b"a file again\n"), Remove("/d"), CreateDir("/d"),
         CreateFile("/d/new", b"only this\n"), Remove("/l"), Symlink("d/new", "/l")],
    )


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


def available_explains_itself(h: Harness) -> None:
    home = h.driver.home
    existed = home.exists()
    availability = availability_of(type(h.driver), home)
    if not existed and home.exists():
        h.fail(f"available() created {home}; it must create nothing")
    if not availability.ok and len(availability.reason.split()) < 2:
        h.fail(f"available() says no with the reason {availability.reason!r}; a user needs a "
               "sentence saying why and, where possible, what to do")


def _apply_at(appliers: Sequence[Applier], root: str) -> None:
    apply_all(appliers, Path(root), BASE_TIME)


def _try(action: Callable[[], object]) -> str:
    try:
        action()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


# containerd's cases first, then pydock's own: the order of the package's docstring.
CASES: list[Case] = [
    *(Case(check.__name__, check) for check in (
        basic, issues.layer_file_update, issues.remove_directory_in_lower_layer, issues.chown,
        issues.directory_permission_on_commit, deleted_files_in_child_snapshot,
        move_file_from_lower_layer, issues.rename, layers_128, view_readonly, root_permission,
        setuid_setgid_sticky, hardlinks, xattrs, devices_and_fifos,
        opaque_directory_replacement, file_to_dir_and_dir_to_file, no_mount_left_after_remove,
        remove_twice_is_harmless, remove_without_prepare_is_harmless, prepare_twice_fails,
        usage_is_plausible, diff_round_trips, concurrent_prepare)),
    Case("available_explains_itself", available_explains_itself, needs_available=False),
    Case("overlay_mount_options", overlay_mount_options),
    Case("host_mounts", host_mounts),
]


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

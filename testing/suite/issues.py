"""Conformance cases that each guard against a bug a storage driver once had, citing its issue
(containerd's ``snapshots/testsuite/issues.go``: docker's storage-driver bugs, kept as cases).
"""

from __future__ import annotations

import errno
import os

from pydock.testing.suite.helpers import (
    BASE_TIME,
    KERNEL_OVERLAY_DRIVERS,
    Applier,
    Chown,
    CreateDir,
    CreateFile,
    Harness,
    MoveByCopy,
    Remove,
    Rename,
    SetMtime,
)


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


def remove_directory_in_lower_layer(h: Harness) -> None:
    # docker#25244
    h.check_layers(
        [CreateDir("/lib", 0o700), CreateFile("/lib/hidden")],
        [Remove("/lib"), CreateDir("/lib", 0o700), CreateFile("/lib/not-hidden")],
        [CreateFile("/lib/newfile")],
    )


def chown(h: Harness) -> None:
    # docker#20240, #24913, #28391
    h.check_layers(
        [CreateDir("/opt", 0o700), CreateDir("/opt/a", 0o700), CreateDir("/opt/a/b", 0o700),
         CreateFile("/opt/a/b/file.txt", b"hello")],
        [Chown("/opt", 1, 1), Chown("/opt/a", 1, 1), Chown("/opt/a/b", 1, 1),
         Chown("/opt/a/b/file.txt", 1, 1)],
    )


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

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

The suite's code is in :mod:`pydock.testing.suite`, split as containerd splits its own:
``testsuite`` (the named cases and the runner), ``issues`` (regression cases, each citing the
issue it guards against), ``overlay_options`` and ``host_mounts`` (a case each), and ``helpers``
(appliers, the harness, the flat reference and the tree comparison). What a driver author uses
is importable from here.

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
  past one page (:mod:`pydock.testing.suite.overlay_options`).
- ``host_mounts``: the driver's mounts, performed on the host as containerd performs a
  snapshotter's (plain mount(2), one page of data, every mount on the root), show the image's
  tree; a write lands in the container, every write fails with EROFS once "ro" is added, and
  unmounting leaves nothing (:mod:`pydock.testing.suite.host_mounts`).

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

from pydock.testing.suite.helpers import (
    BASE_TIME,
    BUILTIN_DRIVERS,
    KERNEL_OVERLAY_DRIVERS,
    SHARED_ROOT_DRIVERS,
    Applier,
    ConformanceFailure,
    DriverFactory,
    DriverUnavailable,
    Harness,
    registry_factory,
)
from pydock.testing.suite.testsuite import CASES, Case, run_case

__all__ = [
    "BASE_TIME", "BUILTIN_DRIVERS", "CASES", "KERNEL_OVERLAY_DRIVERS", "SHARED_ROOT_DRIVERS",
    "Applier", "Case", "ConformanceFailure", "DriverFactory", "DriverUnavailable", "Harness",
    "registry_factory", "run_case",
]

"""A driver's mounts as containerd must be given them.

The core reads a mount of type "bind" as a bind mount; containerd, like mount(8), only by its
"bind" or "rbind" option, and would ask the kernel for a filesystem named "bind" without
one. And a view is read-only whatever the driver: the bind driver's shared directory would
otherwise take a view's writes into its parent.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydock.core.driver import Mount

# Flags containerd's mount package reads from the options, as the core does; any other
# option of a view's mount is data for the filesystem and stays.
_WRITE_OPTIONS = frozenset(("rw", "ro"))
_BIND_OPTIONS = frozenset(("bind", "rbind"))


def as_served(mounts: Sequence[Mount], read_only: bool = False) -> list[Mount]:
    """``mounts`` with a bind option said where the type alone says it, and for a
    ``read_only`` view, ``rw`` (or ``ro``) dropped and ``ro`` added last."""
    served = []
    for mount in mounts:
        options = mount.options
        if mount.type == "bind" and not _BIND_OPTIONS & set(options):
            options = ("bind", *options)
        if read_only:
            options = (*(o for o in options if o not in _WRITE_OPTIONS), "ro")
        served.append(mount._replace(options=options))
    return served

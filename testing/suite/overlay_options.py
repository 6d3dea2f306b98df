"""The conformance case ``overlay_mount_options``: overlay's index, redirect_dir and metacopy
are off in every overlay mount a driver makes, whatever the kernel's defaults.

pydock's diff, commit and flatten read a container's changes in the overlay format with all
three off, so a driver whose root is an overlay mount must turn them off itself rather than
inherit the kernel's defaults (CONFIG_OVERLAY_FS_*, or the overlay module's parameters). The
case checks what the driver asks for (each overlay mount it returns carries the three options,
the last value of each, as the kernel reads them, not "on") and what the kernel made of it (the
live mount's super options in /proc/self/mountinfo, read in the container's own mount
namespace; an option the kernel does not show is at its default, read from the module's
parameters). It does so on a one-layer chain, which the core mounts with mount(2), and on a
chain whose layer paths pass one page of mount data, which the core mounts through
fsconfig(2), one option per call. A driver that makes no overlay mount has nothing to check.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol

from pydock.core.driver import StorageDriver
from pydock.testing.tar import Member, reg

OPTIONS = ("index", "redirect_dir", "metacopy")
_PAGE_SIZE = 4096


class Harness(Protocol):
    """What the case uses of :class:`pydock.testing.suite.helpers.Harness`."""

    base: str
    driver: StorageDriver

    def fail(self, message: str) -> NoReturn: ...
    def import_layer(self, members: Sequence[Member]) -> str: ...
    def layer_paths(self, chain: Sequence[str]) -> list[Path]: ...
    def prepare(self, chain: Sequence[str], container_id: str | None = None) -> str: ...
    def remove(self, container_id: str) -> None: ...
    def run(self, container_id: str, chain: Sequence[str], task: Callable[[str], Any],
            read_only: bool = False) -> Any: ...


def overlay_mount_options(h: Harness) -> None:
    for chain in ([h.base], _chain_past_one_page(h)):
        on_layers = ("one layer" if len(chain) == 1
                     else f"{len(chain)} layers (mount data past one page)")
        container_id = h.prepare(chain)
        for mount in h.driver.mounts(container_id, h.layer_paths(chain)):
            if mount.type != "overlay":
                continue
            values = _values(mount.options)
            missing = [f"{name}={values.get(name, '(not given)')}" for name in OPTIONS
                       if values.get(name, "on") == "on"]
            if missing:
                h.fail(f"an overlay mount on {on_layers} must turn off "
                       f"{', '.join(OPTIONS)} explicitly (kernel defaults vary); it has "
                       f"{', '.join(missing)}")
        fstype, options = h.run(container_id, chain, _root_mount)
        if fstype == "overlay":
            shown = _values(options.split(","))
            on = [name for name in OPTIONS if shown.get(name, _kernel_default(name)) == "on"]
            if on:
                h.fail(f"the container's overlay root on {on_layers} has "
                       f"{', '.join(on)} on; mountinfo shows: {options}")
        h.remove(container_id)


def _chain_past_one_page(h: Harness) -> list[str]:
    """The empty base and as many one-file layers as it takes for their paths to pass a page."""
    chain = [h.base]
    while len(":".join(map(str, h.layer_paths(chain)))) <= _PAGE_SIZE:
        name = f"layer-{len(chain)}"
        chain.append(h.import_layer([reg(name, f"{name}\n".encode())]))
    return chain


def _values(options: Iterable[str]) -> dict[str, str]:
    """``key=value`` options as a dict; a later value wins, as in the kernel."""
    return dict(option.partition("=")[::2] for option in options)


def _root_mount(root: str) -> list[str]:
    """(type, super options) of the topmost mount on ``root``, seen from its mount namespace."""
    found = ["", ""]
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            mount_fields, _, fs_fields = line.partition(" - ")
            # mountinfo escapes space, tab, newline and backslash as octal (\040).
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)),
                           mount_fields.split()[4])
            if point == root:
                fstype, _source, options = fs_fields.split()[:3]
                found = [fstype, options]
    return found


def _kernel_default(option: str) -> str:
    # mountinfo leaves out an option whose value is the kernel's default.
    try:
        parameter = Path(f"/sys/module/overlay/parameters/{option}").read_text().strip()
    except FileNotFoundError:  # a kernel older than the feature
        return "off"
    return "on" if parameter == "Y" else "off"

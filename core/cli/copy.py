"""``pydock cp``: copy files between the host and a container, as ``docker cp``."""

from __future__ import annotations

import click

from pydock.core.cli.common import Context, pass_context, require_root
from pydock.core.errors import PydockError


@click.command()
@click.option("-a", "--archive", is_flag=True,
              help="Keep the source's uid and gid (and setuid bits) instead of the "
                   "destination user's.")
@click.argument("source")
@click.argument("destination")
@pass_context
def cp(ctx: Context, archive: bool, source: str, destination: str) -> None:
    """Copy SOURCE to DESTINATION, one of them CONTAINER:PATH, the other a host path.

    PATH is resolved inside the container's root, whether it runs or not; a symlink is
    copied as a symlink. SRC/. copies a directory's contents.
    """
    from pydock.core.containers.copy import copy

    require_root()
    into, out = split_reference(destination), split_reference(source)
    if (into is None) == (out is None):
        raise PydockError("one of SOURCE and DESTINATION must be CONTAINER:PATH, the other "
                          "a host path" + (" (copying between containers is not supported)"
                                           if into else ""))
    containers = ctx.containers()
    if into is not None:
        copy(containers, containers.resolve(into[0]), True, into[1], source, archive)
    else:
        assert out is not None
        copy(containers, containers.resolve(out[0]), False, out[1], destination, archive)


def split_reference(text: str) -> tuple[str, str] | None:
    """(container, path) for ``CONTAINER:PATH``; None for a host path: one that starts
    with ``/`` or ``.``, or has no ``:`` before its first ``/`` (docker's rule)."""
    if text.startswith(("/", ".")):
        return None
    container, sep, path = text.partition(":")
    if not sep or "/" in container:
        return None
    if not container:
        raise PydockError(f"{text!r}: no container before the ':'")
    if not path:
        raise PydockError(f"{text!r}: no path after the ':'")
    return container, path

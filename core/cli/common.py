"""What every command module of the CLI shares: the context, root, several names at once."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pydock.core.errors import PydockError

# `run` and `exec` pass what follows the command through untouched (`run sh -c ...`).
RUN_CONTEXT = {"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]}
# `run` also takes an option it does not know as the start of the command, for the image's
# entrypoint (`run --entrypoint /bin/sh -c '...'`, as docker's image positional allows);
# without an entrypoint to take it, the spec refuses it as an unknown option.
RUN_ONLY_CONTEXT = {**RUN_CONTEXT, "ignore_unknown_options": True}


class Context:
    """What every command gets: the storage root and, lazily, the container manager."""

    def __init__(self, root: Path, debug: bool) -> None:
        self.root = root
        self.debug = debug

    def containers(self) -> Any:
        from pydock.core.containers.lifecycle import Containers

        return Containers(self.root)


pass_context = click.make_pass_decorator(Context)


def for_each(items: tuple[str, ...], action: Callable[[str], None]) -> bool:
    """Run ``action`` on every item, as docker does for several names: a failure is one
    line on stderr and does not stop the others. True if any failed."""
    failed = False
    for item in items:
        try:
            action(item)
        except (PydockError, OSError) as exc:
            click.echo(f"pydock: {' '.join(str(exc).split())}", err=True)
            failed = True
    return failed


def echo_each(names: tuple[str, ...], action: Callable[[str], None]) -> None:
    """``rm``, ``stop`` and ``kill``: act on each container, print each name done (as
    docker does), and exit 125 once all are tried if any failed."""

    def act_and_echo(name: str) -> None:
        action(name)
        click.echo(name)

    if for_each(names, act_and_echo):
        sys.exit(PydockError.exit_code)


def require_root() -> None:
    if os.geteuid() != 0:
        raise PydockError("pydock needs root for this command (rootless mode is not "
                          "supported yet)")


"""The commands that drive a container's process once it exists: wait, start, restart, top."""

from __future__ import annotations

import os
import sys

import click

from pydock.core.cli.common import Context, echo_each, for_each, pass_context, require_root
from pydock.core.errors import PydockError


@click.command()
@click.argument("names", nargs=-1, required=True)
@pass_context
def wait(ctx: Context, names: tuple[str, ...]) -> None:
    """Block until containers stop, then print their exit codes."""
    from pydock.core.containers import control

    containers = ctx.containers()

    def wait_one(name: str) -> None:
        click.echo(control.wait(containers, containers.resolve(name)))

    if for_each(names, wait_one):
        sys.exit(PydockError.exit_code)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-a", "--attach", is_flag=True, help="Attach to its output (and exit with its code).")
@click.option("-i", "--interactive", is_flag=True, help="Attach its stdin too (implies -a).")
@click.argument("names", nargs=-1, required=True)
@pass_context
def start(ctx: Context, attach: bool, interactive: bool, names: tuple[str, ...]) -> None:
    """Start stopped containers again: the same root and command; output appended to the
    log."""
    from pydock.core.containers import control

    require_root()
    containers = ctx.containers()
    if attach or interactive:
        if len(names) > 1:
            raise PydockError("start -a and -i take one container at a time")
        if interactive and containers.state.load(containers.resolve(names[0])).spec[
                "process"]["terminal"] and not os.isatty(0):
            raise PydockError("the input device is not a TTY: drop -i, or run from a "
                              "terminal")
        code, error = control.start(containers, containers.resolve(names[0]), True,
                                    interactive)
        if error:
            click.echo(f"pydock: {error}", err=True)
        sys.exit(code)

    def start_one(name: str) -> None:
        _, error = control.start(containers, containers.resolve(name), False, False)
        if error:
            raise PydockError(error)
        click.echo(name)

    if for_each(names, start_one):
        sys.exit(PydockError.exit_code)


@click.command()
@click.option("-t", "--time", "grace", type=click.IntRange(min=0), default=10, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def restart(ctx: Context, grace: int, names: tuple[str, ...]) -> None:
    """Stop containers (if running) and start them again."""
    from pydock.core.containers import control

    require_root()
    containers = ctx.containers()
    echo_each(names, lambda name: control.restart(containers, containers.resolve(name), grace))


@click.command()
@click.argument("name")
@pass_context
def top(ctx: Context, name: str) -> None:
    """Show a running container's processes (host pids, as ps -ef)."""
    from pydock.core.cli.views import print_table
    from pydock.core.containers.liveness import live_status
    from pydock.core.containers.state import RUNNING
    from pydock.core.runtime import cgroups
    from pydock.core.runtime.top import COLUMNS, describe

    require_root()
    containers = ctx.containers()
    name = containers.resolve(name)
    record = containers.state.load(name)
    if live_status(record) != RUNNING:
        raise PydockError(f"container {name} is not running")
    rows = [dict(zip(COLUMNS, process.row(), strict=True))
            for process in describe(cgroups.process_ids(containers.root, record.id))]
    print_table(rows, list(COLUMNS))

"""The commands that look after named containers: stop, kill, ps, inspect, rm,
diff, commit, export and prune."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from pydock.core.cli.common import (
    Context,
    echo_each,
    for_each,
    pass_context,
    require_root,
)
from pydock.core.errors import PydockError


@click.command()
@click.option("-t", "--time", "grace", type=click.IntRange(min=0), default=10, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def stop(ctx: Context, grace: int, names: tuple[str, ...]) -> None:
    """Stop running containers: SIGTERM, then SIGKILL after the grace period."""
    require_root()
    containers = ctx.containers()
    echo_each(names, lambda name: containers.stop(containers.resolve(name), grace))


@click.command()
@click.option("-s", "--signal", "signal_name", default="KILL", show_default=True,
              help="Signal to send: a name (TERM, SIGTERM) or a number.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def kill(ctx: Context, signal_name: str, names: tuple[str, ...]) -> None:
    """Send a signal to running containers."""
    require_root()
    signum = parse_signal(signal_name)
    containers = ctx.containers()
    echo_each(names, lambda name: containers.kill(containers.resolve(name), signum))


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the ids.")
@click.option("-n", "--last", type=click.IntRange(min=-1), default=-1, metavar="N",
              help="Show the N most recently created containers (any state).")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="name=PART, status=STATUS or id=PREFIX (repeatable).")
@click.option("--no-trunc", is_flag=True, help="Show full ids and commands.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
def ps(ctx: Context, show_all: bool, quiet: bool, last: int, latest: bool,
       filters: tuple[str, ...], no_trunc: bool, fmt: str) -> None:
    """List containers, newest first."""
    from pydock.core.cli.views import container_rows, filter_rows, print_table

    if latest:
        last = 1
    # As docker's: -n and a filter look at every container, not only the running ones.
    rows = filter_rows(container_rows(ctx.containers(), show_all or last >= 0 or bool(filters),
                                      no_trunc), filters)
    if not show_all and not any(f.startswith("status=") for f in filters) and last < 0:
        rows = [row for row in rows if row["State"] == "running"]
    if last >= 0:
        rows = rows[:last]
    if quiet:
        for row in rows:
            click.echo(row["ID"])
    elif fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["ID", "Image", "Command", "Created", "Status", "Storage", "Names"])


@click.command()
@click.argument("names", nargs=-1, required=True)
@pass_context
def inspect(ctx: Context, names: tuple[str, ...]) -> None:
    """Show containers in detail (JSON, docker's keys)."""
    containers = ctx.containers()
    found: list[Any] = []
    failed = for_each(names, lambda name: found.append(
        containers.inspect(containers.resolve(name))))
    click.echo(json.dumps(found, indent=2))
    if failed:
        sys.exit(PydockError.exit_code)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill running containers first.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def rm(ctx: Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove containers and their storage."""
    require_root()
    containers = ctx.containers()
    echo_each(names, lambda name: containers.remove(containers.resolve(name), force))


@click.command()
@click.argument("name")
@pass_context
def diff(ctx: Context, name: str) -> None:
    """Show what a container changed: A added, C changed, D deleted."""
    from pydock.core.containers.commit import container_changes

    require_root()
    containers = ctx.containers()
    for change in container_changes(containers, containers.resolve(name)):
        click.echo(str(change))


@click.command()
@click.argument("name")
@click.argument("reference")
@pass_context
def commit(ctx: Context, name: str, reference: str) -> None:
    """Create image REFERENCE from a container's changes (one new layer on its image)."""
    from pydock.core.containers.commit import commit as commit_container

    require_root()
    containers = ctx.containers()
    click.echo(commit_container(containers, containers.resolve(name), reference).id)


@click.command()
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The tar file to write.")
@pass_context
def export(ctx: Context, name: str, output: Path) -> None:
    """Write a container's whole root filesystem, flattened, to a tar file."""
    from pydock.core.containers.commit import export as export_container

    require_root()
    containers = ctx.containers()
    export_container(containers, containers.resolve(name), output)


@click.command()
@pass_context
def prune(ctx: Context) -> None:
    """Remove every container that is not running."""
    require_root()
    for name in ctx.containers().prune():
        click.echo(name)


def parse_signal(text: str) -> int:
    """TERM, SIGTERM, term or 15: docker's spellings of a signal."""
    import signal

    name = text.upper().removeprefix("SIG")
    if name.isdigit() and 0 < int(name) <= signal.SIGRTMAX:
        return int(name)
    if f"SIG{name}" in signal.Signals.__members__:
        return int(signal.Signals[f"SIG{name}"])
    raise PydockError(f"invalid signal {text!r}: expected a name such as TERM or a number")


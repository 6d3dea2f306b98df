"""``pydock storage ls`` and ``pydock storage info``: the drivers and the plugins behind them."""

from __future__ import annotations

import json

import click

from pydock.core.cli.common import (
    Context,
    pass_context,
)


@click.group()
def storage() -> None:
    """Inspect storage drivers."""


@storage.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
def storage_ls(ctx: Context, fmt: str) -> None:
    """List storage drivers, where each comes from, and whether it works here."""
    from pydock.core.cli.views import (
        disabled_plugin_rows,
        plugin_failure_rows,
        print_table,
        storage_rows,
    )
    from pydock.core.plugins import DISABLE_VARIABLE

    containers = ctx.containers()
    registry = containers.registry
    registry.load_entry_points()
    rows, failures = storage_rows(containers), plugin_failure_rows(registry)
    disabled = disabled_plugin_rows(registry)
    for problem in registry.disabling_problems():
        click.echo(f"pydock: warning: {problem}", err=True)
    if fmt == "json":
        click.echo(json.dumps({"drivers": rows, "failed_plugins": failures,
                               "disabled_plugins": disabled}, indent=2))
        return
    print_table([{**row, "Available": "yes" if row["Available"] else "no"} for row in rows],
                ["Name", "Origin", "Available", "Reason"])
    for failure in failures:
        click.echo(f"plugin {failure['Plugin']} ({failure['Origin']}) failed: "
                   f"{failure['Error']}", err=True)
    for plugin in disabled:
        click.echo(f"plugin {plugin['Plugin']} ({plugin['Origin']}) disabled by "
                   f"{DISABLE_VARIABLE}", err=True)


@storage.command("info")
@click.argument("driver")
@pass_context
def storage_info(ctx: Context, driver: str) -> None:
    """Show one storage driver in detail (JSON)."""
    from pydock.core.cli.views import storage_details

    click.echo(json.dumps(storage_details(ctx.containers(), driver), indent=2))


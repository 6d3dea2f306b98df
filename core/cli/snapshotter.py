"""``pydock snapshotter serve``: a driver as containerd's snapshotter (docs/containerd.md)."""

from __future__ import annotations

import click

from pydock.core.cli.common import Context, pass_context, require_root
from pydock.core.errors import PydockError


@click.group()
def snapshotter() -> None:
    """Serve a storage driver to containerd."""


@snapshotter.command("serve")
@click.option("--address", required=True, metavar="SOCKET",
              help="Unix socket to serve on (containerd's proxy_plugins address).")
@click.option("--storage", "driver", default="overlay", show_default=True, metavar="DRIVER",
              help="The storage driver whose snapshots to serve.")
@pass_context
def serve(ctx: Context, address: str, driver: str) -> None:
    """Serve containerd's Snapshots API on SOCKET until SIGINT or SIGTERM."""
    require_root()
    try:
        # Here only to say in one line what is missing.
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
    except ImportError:
        raise PydockError("the snapshotter needs grpcio and protobuf: "
                          "pip install 'pydock[containerd]'") from None
    from pydock.core.snapshotter.server import serve as serve_snapshots

    serve_snapshots(ctx.root, address, driver, ctx.debug)

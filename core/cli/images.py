"""``pydock image ...``: import, load, save, ls, rm and inspect."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from pydock.core.cli.common import (
    Context,
    for_each,
    pass_context,
    require_root,
)
from pydock.core.cli.registry import pull, push
from pydock.core.errors import PydockError


@click.group()
def image() -> None:
    """Manage images."""


@image.command("import")
@click.argument("tarball", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("reference")
@pass_context
def image_import(ctx: Context, tarball: Path, reference: str) -> None:
    """Create an image from a root filesystem TARBALL (.tar, .tar.gz, .tar.xz, .tar.bz2)."""
    from pydock.core.images.rootfs_tarball import import_rootfs_tarball

    require_root()
    click.echo(import_rootfs_tarball(ctx.containers().images, tarball, reference).id)


@image.command("load")
@click.option("-i", "--input", "source", required=True,
              type=click.Path(exists=True, path_type=Path),
              help="A docker archive (docker/podman save) or an OCI layout (directory or tar).")
@click.option("--name", metavar="REPOSITORY",
              help="Name an OCI layout's images that carry only a tag (skopeo's oci:DIR:TAG) "
                   "REPOSITORY:TAG.")
@pass_context
def image_load(ctx: Context, source: Path, name: str | None) -> None:
    """Load images from a docker archive or an OCI image layout."""
    from pydock.core.images.load import load_archive

    require_root()
    for loaded in load_archive(ctx.containers().images, source, name):
        for name in loaded.names or (loaded.id,):
            click.echo(f"Loaded image: {name}")


@image.command("save")
@click.argument("reference")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The archive to write.")
@click.option("--format", "fmt", type=click.Choice(["docker", "oci"]), default="docker",
              show_default=True, help="docker: as docker/podman save; oci: an OCI layout tar.")
@pass_context
def image_save(ctx: Context, reference: str, output: Path, fmt: str) -> None:
    """Save an image to a docker archive or an OCI layout tar."""
    from pydock.core.images.save import save_archive

    save_archive(ctx.containers().images, reference, output, fmt)


@image.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--digests", is_flag=True, help="Show the manifest digest of each name.")
@pass_context
def image_ls(ctx: Context, fmt: str, digests: bool) -> None:
    """List images."""
    from pydock.core.cli.views import image_rows, print_table

    rows = image_rows(ctx.containers().images)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["Repository", "Tag", *(["Digest"] if digests else []), "ID",
                           "Created", "Size"])


@click.command("tag")
@click.argument("source")
@click.argument("target")
@pass_context
def tag(ctx: Context, source: str, target: str) -> None:
    """Give the image SOURCE (name or id) the name TARGET ([HOST[:PORT]/]NAME[:TAG])."""
    require_root()
    ctx.containers().images.tag(source, target)


image.add_command(tag)
image.add_command(pull)
image.add_command(push)


@image.command("rm")
@click.argument("references", nargs=-1, required=True)
@pass_context
def image_rm(ctx: Context, references: tuple[str, ...]) -> None:
    """Remove images (refused while a container uses them)."""
    require_root()
    containers = ctx.containers()

    def remove(reference: str) -> None:
        removed = containers.images.remove(reference, containers.users_of)
        click.echo(f"Untagged: {reference} ({removed.id})")

    if for_each(references, remove):
        sys.exit(PydockError.exit_code)


@image.command("inspect")
@click.argument("reference")
@pass_context
def image_inspect(ctx: Context, reference: str) -> None:
    """Show an image's id, names, layers and config (JSON)."""
    from pydock.core.cli.views import image_details

    click.echo(json.dumps(image_details(ctx.containers().images, reference), indent=2))


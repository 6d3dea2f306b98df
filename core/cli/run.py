"""``pydock run`` and ``pydock exec``: the commands that start processes in containers.

The hot path: this module imports click and nothing of pydock's beyond what the
run needs; the container machinery is imported inside the commands.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from pydock.core.cli.common import (
    RUN_CONTEXT,
    RUN_ONLY_CONTEXT,
    Context,
    pass_context,
    require_root,
)
from pydock.core.errors import PydockError

EXIT_NOT_FOUND = 127  # the command was not found in the container


@click.command(context_settings=RUN_ONLY_CONTEXT)
@click.option("--storage", "driver", default="overlay", show_default=True,
              help="Storage driver for this container (see `pydock storage ls`).")
@click.option("-name", "--name", "name", help="Container name (default: generated).")
@click.option("--image", help="Image NAME[:TAG] or id (default: the embedded default image).")
@click.option("--pull", type=click.Choice(["missing", "always", "never"]), default="missing",
              envvar="PYDOCK_PULL_POLICY", show_default=True,
              help="Pull --image from its registry: when it is missing here, always, or never "
                   "(env PYDOCK_PULL_POLICY).")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("--hostname", help="Container hostname (default: the container name).")
@click.option("--network", metavar="bridge|host|none",
              help="bridge (the default): the storage root's bridge, with NAT to the outside; "
              "none: a private network with only lo; host: the host's.")
@click.option("-p", "--publish", multiple=True, metavar="[IP:]HOST:CONTAINER[/tcp|udp]",
              help="Publish a container's port on the host (bridge network; repeatable).")
@click.option("-P", "--publish-all", is_flag=True,
              help="Publish every port the image EXPOSEs on a free host port.")
@click.option("--dns", multiple=True, metavar="IP", help="Nameserver for /etc/resolv.conf.")
@click.option("--dns-search", multiple=True, metavar="DOMAIN",
              help="Search domain for /etc/resolv.conf (\".\": none).")
@click.option("--add-host", multiple=True, metavar="HOST:IP", help="Add a line to /etc/hosts.")
@click.option("--read-only", is_flag=True, help="Mount the container's root read-only.")
@click.option("-u", "--user", help="NAME|UID[:GROUP|GID] to run as (default: the image's User).")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro|rw]",
              help="Bind mount host path SRC at DST (repeatable; SRC is created if missing).")
@click.option("-d", "--detach", is_flag=True,
              help="Run in the background and print the container's id.")
@click.option("-i", "--interactive", is_flag=True,
              help="With -t: send what you type to the container's terminal.")
@click.option("-t", "--tty", is_flag=True, help="Give the container a pseudo-terminal.")
@click.option("-m", "--memory", metavar="SIZE",
              help="Memory limit, e.g. 512m or 1g (units b, k, m, g; no swap on top).")
@click.option("--cpus", metavar="N", help="CPU limit, e.g. 0.5 or 1.5 CPUs.")
@click.option("--pids-limit", metavar="N", help="Limit on processes and threads (-1: none).")
@click.option("--cap-add", multiple=True, metavar="CAP",
              help="Add a Linux capability to docker's default set (repeatable; ALL: all).")
@click.option("--cap-drop", multiple=True, metavar="CAP",
              help="Drop a Linux capability (repeatable; ALL: all but those added).")
@click.option("--security-opt", multiple=True, metavar="OPT",
              help="no-new-privileges[=true|false]: no exec may grant privileges (setuid).")
@click.option("--device", "devices", multiple=True, metavar="HOST[:CONTAINER][:PERMS]",
              help="Give the container the host's device node HOST (PERMS: r, w, m; rwm).")
@click.option("--entrypoint", metavar="CMD",
              help="Run CMD instead of the image's ENTRYPOINT (and drop its CMD); '' clears it.")
@click.option("--tmpfs", multiple=True, metavar="DST[:OPTIONS]",
              help="Mount a tmpfs at DST (noexec,nosuid,nodev unless OPTIONS say otherwise).")
@click.option("--restart", default="no", show_default=True,
              metavar="no|on-failure[:N]|always|unless-stopped",
              help="Restart the container when it exits (its monitor does; stop ends it).")
@click.option("--init", is_flag=True,
              help="Run a reaping init (tini) as PID 1, which runs the command.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_context
def run(ctx: Context, /, command: tuple[str, ...], **options: Any) -> None:
    """Run COMMAND in a new container (default: the image's command).

    In the foreground, the container reads pydock's stdin (a terminal with -i -t), and
    its output is shown and kept in its log (`pydock logs`).
    """
    require_root()
    from pydock.core.runtime.cgroups import prime_migration

    # Before the run path's imports, which then hide the kernel's wait (see there).
    prime_migration()
    from pydock.core.containers.spec import RunOptions

    if options["tty"] and options["interactive"] and not os.isatty(0):
        raise PydockError("the input device is not a TTY: drop -t, or run from a terminal")
    pull = options.pop("pull")
    containers = ctx.containers()
    if pull == "always" and options["image"]:
        _pull(containers.images, options["image"])
    try:
        container_id, code, error = containers.run(RunOptions(command=command, **options))
    except PydockError as exc:
        from pydock.core.images.store import NoSuchImage

        # Raised before run has made anything: the image is fetched, and the run starts over.
        if pull != "missing" or not options["image"] or not isinstance(exc, NoSuchImage):
            raise
        try:
            _pull(containers.images, options["image"])
        except PydockError as failed:
            raise PydockError(f"{exc}, and pulling it failed: {failed}") from None
        container_id, code, error = containers.run(RunOptions(command=command, **options))
    if error:
        if code == EXIT_NOT_FOUND and command and options["image"] is None:
            error += image_hint(containers, command[0])
        click.echo(f"pydock: {error}", err=True)
    elif options["detach"]:
        click.echo(container_id)  # as docker: scripts do id=$(pydock run -d ...)
    sys.exit(code)


def _pull(images: Any, reference: str) -> None:
    """``pydock pull`` into the store ``images``, its report on stderr (stdout is the
    container's). Only here does a run import the registry code, and httpx with it."""
    from pydock.core.images.registry.pull import pull

    pulled = pull(images, reference)
    click.echo(f"{pulled.summary}\n{pulled.status}", err=True)


def image_hint(containers: Any, word: str) -> str:
    """The hint for a docker habit: the image given as the command's first word
    (``pydock run debian:bookworm cat ...``), where pydock wants ``--image``."""
    if len(word) < 12 and all(c in "0123456789abcdef" for c in word):
        return ""  # an id prefix so short names an image by chance, not by intent
    try:
        containers.images.resolve(word)
    except (PydockError, OSError, ValueError):
        return ""
    return f" (did you mean --image {word}?)"


@click.command("exec", context_settings=RUN_CONTEXT)
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable.")
@click.option("-w", "--workdir", help="Working directory (default: the container's).")
@click.option("-u", "--user", help="NAME|UID[:GROUP|GID] to run as (default: the container's).")
@click.option("-i", "--interactive", is_flag=True,
              help="With -t: send what you type to the command's terminal.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a pseudo-terminal.")
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_context
def exec_(ctx: Context, /, name: str, command: tuple[str, ...], **options: Any) -> None:
    """Run COMMAND in a running container, with its namespaces, root and environment."""
    from pydock.core.containers.spec import ExecOptions

    require_root()
    if options["tty"] and options["interactive"] and not os.isatty(0):
        raise PydockError("the input device is not a TTY: drop -t, or run from a terminal")
    containers = ctx.containers()
    code, error = containers.exec(containers.resolve(name),
                                  ExecOptions(command=command, **options))
    if error:
        click.echo(f"pydock: {error}", err=True)
    sys.exit(code)


"""``pydock pull``, ``push``, ``login`` and ``logout`` (also ``image pull`` / ``image push``).

The registry code, and httpx with it, is imported inside each command: nothing here is on
any other command's way.
"""

from __future__ import annotations

import sys

import click

from pydock.core.cli.common import Context, pass_context, require_root
from pydock.core.errors import PydockError

_TLS_HELP = ("Verify the registry's certificate (default). false: also allow plain HTTP, as "
             "for a loopback registry.")


def _tls(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise PydockError(f"--tls-verify: expected true or false, not {value!r}")
    return value.lower() == "true"


@click.command()
@click.argument("reference")
@click.option("--platform", "wanted_platform", metavar="OS/ARCH[/VARIANT]",
              help="The platform to pull from a multi-platform image (default: this machine's).")
@click.option("--tls-verify", default="true", metavar="true|false", help=_TLS_HELP)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image's id.")
@pass_context
def pull(ctx: Context, reference: str, wanted_platform: str | None, tls_verify: str,
         quiet: bool) -> None:
    """Pull an image from a registry ([HOST[:PORT]/]NAME[:TAG|@DIGEST])."""
    from pydock.core.images.registry.pull import pull as do_pull

    require_root()
    pulled = do_pull(ctx.containers().images, reference, wanted_platform=wanted_platform,
                     tls_verify=_tls(tls_verify))
    if not sys.stderr.isatty():
        click.echo(pulled.summary, err=True)
    if quiet:
        click.echo(pulled.image.id)
        return
    click.echo(pulled.status)
    click.echo(pulled.image.id)


@click.command()
@click.argument("reference")
@click.option("--tls-verify", default="true", metavar="true|false", help=_TLS_HELP)
@click.option("--chunk-size", type=click.IntRange(min=0), default=0, metavar="BYTES",
              help="Upload blobs in chunks of this size (default 0: each in one request).")
@pass_context
def push(ctx: Context, reference: str, tls_verify: str, chunk_size: int) -> None:
    """Push an image to a registry ([HOST[:PORT]/]NAME[:TAG])."""
    from pydock.core.images.registry.push import push as do_push

    require_root()
    pushed = do_push(ctx.containers().images, reference, tls_verify=_tls(tls_verify),
                     chunk_size=chunk_size)
    if pushed.warning:
        click.echo(f"pydock: warning: {pushed.warning}", err=True)
    click.echo(f"{pushed.tag}: digest: {pushed.digest} size: {pushed.size}")


@click.command()
@click.argument("registry")
@click.option("-u", "--username", help="The user name (asked for on a terminal if missing).")
@click.option("-p", "--password", help="The password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--tls-verify", default="true", metavar="true|false", help=_TLS_HELP)
def login(registry: str, username: str | None, password: str | None, password_stdin: bool,
          tls_verify: str) -> None:
    """Log in to REGISTRY (HOST[:PORT]); the credentials are checked, then saved."""
    from pydock.core.images.registry import credentials
    from pydock.core.images.registry.client import Registry

    host = _registry_host(registry)
    if password_stdin:
        if password is not None:
            raise PydockError("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty() or password_stdin:
            raise PydockError("login needs -u USER (no terminal to ask on)")
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            raise PydockError("login needs --password-stdin or -p (no terminal to ask on)")
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise PydockError("login needs a user name and a password")
    # No repository: the /v2/ check, and a token for no scope, prove the login (a registry
    # that lets anyone in lets this user in too, as docker finds).
    with Registry(host, "", tls_verify=_tls(tls_verify), auth=(username, password)):
        pass
    credentials.store(host, username, password)
    click.echo("Login Succeeded!")


@click.command()
@click.argument("registry")
def logout(registry: str) -> None:
    """Forget the credentials saved for REGISTRY."""
    from pydock.core.images.registry import credentials

    host = _registry_host(registry)
    if not credentials.remove(host):
        raise PydockError(f"not logged in to {host}")
    click.echo(f"Removed login credentials for {host}")


def _registry_host(text: str) -> str:
    """``HOST[:PORT]`` from what users type: also ``https://host/``, ``docker.io``."""
    host = text.removeprefix("https://").removeprefix("http://").rstrip("/")
    if host in ("index.docker.io", "registry-1.docker.io") or host.startswith(
            "index.docker.io/"):
        return "docker.io"
    if not host or "/" in host or any(c.isspace() for c in host):
        raise PydockError(f"invalid registry {text!r}: expected HOST[:PORT]")
    return host

"""The ``pydock`` command line.

Only click and what a command needs are imported: ``pydock run`` is the hot
path and every module it does not need is imported inside the command that
does (``python -X importtime -m pydock.core.cli.main run ...`` shows the cost).

Errors of pydock's own making (:class:`PydockError`, click usage errors) are
one line on stderr and exit status 125; anything else is a bug, reported as
one line too unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from pydock.core import __version__
from pydock.core.errors import PydockError

DEFAULT_ROOT = "/var/lib/pydock"
RUN_CONTEXT = {"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]}


class Context:
    """What every command gets: the storage root and, lazily, the container manager."""

    def __init__(self, root: Path, debug: bool) -> None:
        self.root = root
        self.debug = debug

    def containers(self) -> Any:
        from pydock.core.containers.lifecycle import Containers

        return Containers(self.root)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="PYDOCK_ROOT", default=DEFAULT_ROOT, show_default=True,
              help="Storage root for images, containers and driver data (env PYDOCK_ROOT).")
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
@click.version_option(__version__, prog_name="pydock")
@click.pass_context
def cli(ctx: click.Context, root: str, debug: bool) -> None:
    """pydock: a daemonless, docker-like container runtime with pluggable storage."""
    if not root:
        raise PydockError("--root must not be empty")
    # Absolute from here on: a relative root would change meaning inside the container setup.
    ctx.obj = Context(Path(os.path.abspath(root)), debug)


@cli.command(context_settings=RUN_CONTEXT)
@click.option("--storage", "driver", default="overlay", show_default=True,
              help="Storage driver for this container (see `pydock storage ls`).")
@click.option("-name", "--name", "name", help="Container name (default: generated).")
@click.option("--image", help="Image NAME[:TAG] or id (default: the embedded default image).")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL", help="Set an environment variable.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("--hostname", help="Container hostname (default: the container name).")
@click.option("--network", type=click.Choice(["none", "host"]), default="none",
              show_default=True, help="none: a private network with only lo; host: the host's.")
@click.option("--read-only", is_flag=True, help="Mount the container's root read-only.")
@click.option("-u", "--user", help="NAME|UID[:GROUP|GID] to run as (default: the image's User).")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro|rw]",
              help="Bind mount host path SRC at DST (repeatable; SRC is created if missing).")
@click.option("-d", "--detach", is_flag=True,
              help="Run in the background and print the container's name.")
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
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_context
def run(ctx: Context, /, command: tuple[str, ...], **options: Any) -> None:
    """Run COMMAND in a new container (default: the image's command).

    In the foreground, the container reads pydock's stdin (a terminal with -i -t), and
    its output is shown and kept in its log (`pydock logs`).
    """
    from pydock.core.containers.spec import RunOptions

    _require_root()
    if options["tty"] and options["interactive"] and not os.isatty(0):
        raise PydockError("the input device is not a TTY: drop -t, or run from a terminal")
    name, code, error = ctx.containers().run(RunOptions(command=command, **options))
    if error:
        click.echo(f"pydock: {error}", err=True)
    elif options["detach"]:
        click.echo(name)
    sys.exit(code)


@cli.command("exec", context_settings=RUN_CONTEXT)
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

    _require_root()
    if options["tty"] and options["interactive"] and not os.isatty(0):
        raise PydockError("the input device is not a TTY: drop -t, or run from a terminal")
    code, error = ctx.containers().exec(name, ExecOptions(command=command, **options))
    if error:
        click.echo(f"pydock: {error}", err=True)
    sys.exit(code)


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until the container ends.")
@click.argument("name")
@pass_context
def logs(ctx: Context, follow: bool, name: str) -> None:
    """Show a container's output: stdout and stderr, in the order it wrote them."""
    from pydock.core.runtime.logs import STDERR, STDOUT

    outputs = {STDOUT: sys.stdout.buffer, STDERR: sys.stderr.buffer}
    try:
        for stream, data in ctx.containers().log_frames(name, follow):
            outputs[stream].write(data)
            outputs[stream].flush()
    except BrokenPipeError:  # `pydock logs NAME | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@cli.command()
@click.option("-t", "--time", "grace", type=click.IntRange(min=0), default=10, show_default=True,
              help="Seconds to wait after SIGTERM before SIGKILL.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def stop(ctx: Context, grace: int, names: tuple[str, ...]) -> None:
    """Stop running containers: SIGTERM, then SIGKILL after the grace period."""
    _require_root()
    containers = ctx.containers()
    _echo_each(names, lambda name: containers.stop(name, grace))


@cli.command()
@click.option("-s", "--signal", "signal_name", default="KILL", show_default=True,
              help="Signal to send: a name (TERM, SIGTERM) or a number.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def kill(ctx: Context, signal_name: str, names: tuple[str, ...]) -> None:
    """Send a signal to running containers."""
    _require_root()
    signum = _parse_signal(signal_name)
    containers = ctx.containers()
    _echo_each(names, lambda name: containers.kill(name, signum))


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show stopped containers too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
def ps(ctx: Context, show_all: bool, fmt: str) -> None:
    """List containers."""
    from pydock.core.cli.views import container_rows, print_table

    rows = container_rows(ctx.containers(), show_all)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["ID", "Image", "Command", "Created", "Status", "Storage", "Names"])


@cli.command()
@click.argument("names", nargs=-1, required=True)
@pass_context
def inspect(ctx: Context, names: tuple[str, ...]) -> None:
    """Show containers in detail (JSON, docker's keys)."""
    containers = ctx.containers()
    found: list[Any] = []
    failed = _for_each(names, lambda name: found.append(containers.inspect(name)))
    click.echo(json.dumps(found, indent=2))
    if failed:
        sys.exit(PydockError.exit_code)


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill running containers first.")
@click.argument("names", nargs=-1, required=True)
@pass_context
def rm(ctx: Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove containers and their storage."""
    _require_root()
    containers = ctx.containers()
    _echo_each(names, lambda name: containers.remove(name, force))


@cli.command()
@click.argument("name")
@pass_context
def diff(ctx: Context, name: str) -> None:
    """Show what a container changed: A added, C changed, D deleted."""
    from pydock.core.containers.commit import container_changes

    _require_root()
    for change in container_changes(ctx.containers(), name):
        click.echo(str(change))


@cli.command()
@click.argument("name")
@click.argument("reference")
@pass_context
def commit(ctx: Context, name: str, reference: str) -> None:
    """Create image REFERENCE from a container's changes (one new layer on its image)."""
    from pydock.core.containers.commit import commit as commit_container

    _require_root()
    click.echo(commit_container(ctx.containers(), name, reference).id)


@cli.command()
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The tar file to write.")
@pass_context
def export(ctx: Context, name: str, output: Path) -> None:
    """Write a container's whole root filesystem, flattened, to a tar file."""
    from pydock.core.containers.commit import export as export_container

    _require_root()
    export_container(ctx.containers(), name, output)


@cli.command()
@pass_context
def prune(ctx: Context) -> None:
    """Remove every container that is not running."""
    _require_root()
    for name in ctx.containers().prune():
        click.echo(name)


@cli.group()
def image() -> None:
    """Manage images."""


@image.command("import")
@click.argument("tarball", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("reference")
@pass_context
def image_import(ctx: Context, tarball: Path, reference: str) -> None:
    """Create an image from a root filesystem TARBALL (.tar, .tar.gz, .tar.xz, .tar.bz2)."""
    from pydock.core.images.rootfs_tarball import import_rootfs_tarball

    _require_root()
    click.echo(import_rootfs_tarball(ctx.containers().images, tarball, reference).id)


@image.command("load")
@click.option("-i", "--input", "source", required=True,
              type=click.Path(exists=True, path_type=Path),
              help="A docker archive (docker/podman save) or an OCI layout (directory or tar).")
@pass_context
def image_load(ctx: Context, source: Path) -> None:
    """Load images from a docker archive or an OCI image layout."""
    from pydock.core.images.archives import load_archive

    _require_root()
    for loaded in load_archive(ctx.containers().images, source):
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
    from pydock.core.images.archives import save_archive

    save_archive(ctx.containers().images, reference, output, fmt)


@image.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_context
def image_ls(ctx: Context, fmt: str) -> None:
    """List images."""
    from pydock.core.cli.views import image_rows, print_table

    rows = image_rows(ctx.containers().images)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(rows, ["Repository", "Tag", "ID", "Created", "Size"])


@image.command("rm")
@click.argument("references", nargs=-1, required=True)
@pass_context
def image_rm(ctx: Context, references: tuple[str, ...]) -> None:
    """Remove images (refused while a container uses them)."""
    _require_root()
    containers = ctx.containers()

    def remove(reference: str) -> None:
        removed = containers.images.remove(reference, containers.users_of)
        click.echo(f"Untagged: {reference} ({removed.id})")

    if _for_each(references, remove):
        sys.exit(PydockError.exit_code)


@image.command("inspect")
@click.argument("reference")
@pass_context
def image_inspect(ctx: Context, reference: str) -> None:
    """Show an image's id, names, layers and config (JSON)."""
    from pydock.core.cli.views import image_details

    click.echo(json.dumps(image_details(ctx.containers().images, reference), indent=2))


@cli.group()
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
    print_table(rows, ["Name", "Origin", "Available", "Reason"])
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


@cli.command()
@click.option("--storage", "drivers", multiple=True, metavar="DRIVER[,DRIVER...]",
              help="Drivers to measure (default: every driver that works here, plugins "
                   "included).")
@click.option("--image", "images", multiple=True, metavar="IMAGE",
              help="An image to measure, instead of the default image and the large image "
                   "bench builds; repeatable.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Repetitions of each measurement, shown as median (min-max).")
@click.option("--scale", type=click.IntRange(min=1), default=50, show_default=True,
              help="Containers created together from each image for the scale rows.")
@click.option("--large-size", type=int, default=256, show_default=True, metavar="MB",
              help="Size of the large image in MB, at least 8 (built once per size and root).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]),
              default="table", show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Also draw the results as a PNG (needs: pip install 'pydock[plot]').")
@pass_context
def bench(ctx: Context, drivers: tuple[str, ...], images: tuple[str, ...], repeat: int,
          scale: int, large_size: int, fmt: str, plot: Path | None) -> None:
    """Measure what each storage driver costs on this machine.

    For every driver and image: prepare, write into and remove a container's storage, run
    /bin/true with `pydock run --rm`, measure its disk, and keep --scale containers at once.
    Images: the default image and a large one (256 MB in 8,372 files, six of them 32 MB),
    built on first use. Defaults take a few minutes; progress shows on a terminal.
    Everything bench creates is removed when it ends, also on Ctrl-C.
    """
    from pydock.core.bench import report as bench_report
    from pydock.core.bench.run import BenchOptions, run_bench

    _require_root()
    if plot is not None:
        bench_report.check_plot(plot)
    results = run_bench(ctx.root, BenchOptions(drivers, images, repeat, scale, large_size))
    click.echo(bench_report.render(results, fmt), nl=False)
    if plot is not None:
        bench_report.write_plot(results, plot)


def _for_each(items: tuple[str, ...], action: Callable[[str], None]) -> bool:
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


def _echo_each(names: tuple[str, ...], action: Callable[[str], None]) -> None:
    """``rm``, ``stop`` and ``kill``: act on each container, print each name done (as
    docker does), and exit 125 once all are tried if any failed."""

    def act_and_echo(name: str) -> None:
        action(name)
        click.echo(name)

    if _for_each(names, act_and_echo):
        sys.exit(PydockError.exit_code)


def _parse_signal(text: str) -> int:
    """TERM, SIGTERM, term or 15: docker's spellings of a signal."""
    import signal

    name = text.upper().removeprefix("SIG")
    if name.isdigit() and 0 < int(name) <= signal.SIGRTMAX:
        return int(name)
    if f"SIG{name}" in signal.Signals.__members__:
        return int(signal.Signals[f"SIG{name}"])
    raise PydockError(f"invalid signal {text!r}: expected a name such as TERM or a number")


def _require_root() -> None:
    if os.geteuid() != 0:
        raise PydockError("pydock needs root for this command (rootless mode is not "
                          "supported yet)")


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the ``pydock`` console script: maps every failure to one line + 125."""
    try:
        _main(argv)
    except SystemExit as exc:
        _leave(exc.code)
    _leave(0)


def _leave(code: object) -> NoReturn:
    """Exit without the interpreter's teardown (freeing every module imported, a garbage
    collection): milliseconds on every command, for nothing pydock needs. Its files are
    closed by ``with`` blocks; only the standard streams' buffers are left to write."""
    if isinstance(code, str):  # sys.exit("message"), as Python would print it
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):  # None if pydock was started without it
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a closed pipe
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _main(argv: list[str] | None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    _ensure_stdio()
    try:
        # Without standalone mode click returns the code of --help/--version exits and
        # raises everything else, so every error gets the same one-line treatment.
        code = cli.main(args=argv, prog_name="pydock", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.UsageError as exc:
        _die(exc.format_message())
    except click.Abort:
        _die("aborted", 130)
    except KeyboardInterrupt:
        _die("interrupted", 130)
    except PydockError as exc:
        _die(str(exc), exc.exit_code)
    except click.ClickException as exc:
        _die(exc.format_message())
    except OSError as exc:
        if debug:
            raise
        _die(str(exc))
    except Exception as exc:
        if debug:
            raise
        _die(f"internal error: {exc!r} (run with --debug for a traceback)")


def _ensure_stdio() -> None:
    """Put /dev/null on any of fds 0-2 the caller closed: otherwise the next files pydock
    opens would land there, and a container would get one as its stdin or stdout."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _die(message: str, code: int = PydockError.exit_code) -> NoReturn:
    one_line = " ".join(message.split())
    click.echo(f"pydock: {one_line}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()

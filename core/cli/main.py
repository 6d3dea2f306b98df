"""The ``pydock`` command line: the group, its commands by name, errors and exit codes.

Each command lives in the module of its kind (:mod:`run`, :mod:`containers`,
:mod:`images`, :mod:`storage`, :mod:`bench`) and is imported only when it is the one asked
for: ``pydock run`` is the hot path, and defining every other command's options on the way
would cost it milliseconds (``python -X importtime -m pydock.core.cli.main run ...`` shows
the cost). A new command is a function in one of those modules and a line in
:data:`COMMANDS`.

Errors of pydock's own making (:class:`PydockError`, click usage errors) are
one line on stderr and exit status 125; anything else is a bug, reported as
one line too unless ``--debug`` asks for the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from pydock.core import __version__
from pydock.core.cli.common import Context
from pydock.core.errors import PydockError

DEFAULT_ROOT = "/var/lib/pydock"

# Command name -> "module:function", the module below pydock.core.cli.
COMMANDS = {
    "run": "run:run", "exec": "run:exec_",
    "logs": "logs:logs", "stop": "containers:stop", "kill": "containers:kill",
    "ps": "containers:ps", "inspect": "containers:inspect", "rm": "containers:rm",
    "diff": "containers:diff", "commit": "containers:commit", "export": "containers:export",
    "prune": "containers:prune",
    "wait": "control:wait", "start": "control:start", "restart": "control:restart",
    "cp": "copy:cp", "top": "control:top",
    "image": "images:image", "storage": "storage:storage", "bench": "bench:bench",
    "tag": "images:tag", "pull": "registry:pull", "push": "registry:push",
    "login": "registry:login", "logout": "registry:logout",
    "snapshotter": "snapshotter:snapshotter",
}


class LazyGroup(click.Group):
    """A group whose commands are imported by name, when one of them is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        # __import__, not importlib.import_module: the import statement's own machinery,
        # which `python -X importtime` reports on (import_module's top module it does not).
        module = __import__(f"pydock.core.cli.{module_name}", fromlist=[attribute])
        command = getattr(module, attribute)
        assert isinstance(command, click.Command), target
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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

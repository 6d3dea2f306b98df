"""The one exception type pydock raises for errors of its own making, and its exit status."""

EXIT_PYDOCK_ERROR = 125
"""The exit status of a failure in pydock itself rather than in the container's program: 125,
as ``docker run`` reports it. It is also the status pydock records for a container whose setup
failed or whose monitor was lost, so a script tells both apart from the program's own
failures the way it does with docker (a program that exits 125 itself is ambiguous there too)."""


class PydockError(Exception):
    """An error the user can act on: printed as one line on stderr, exit status 125.

    Raise it with a message that says what failed and, where there is one, what
    to do about it. Anything else escaping to the CLI is a bug in pydock.
    """

    exit_code = EXIT_PYDOCK_ERROR

"""The one exception type pydock raises for errors of its own making."""


class PydockError(Exception):
    """An error the user can act on: printed as one line on stderr, exit status 125.

    Raise it with a message that says what failed and, where there is one, what
    to do about it. Anything else escaping to the CLI is a bug in pydock.
    """

    exit_code = 125

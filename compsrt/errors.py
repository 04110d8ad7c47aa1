"""The one exception type users see: its message names the problem and the fix."""


class CompsrtError(Exception):
    """A user-facing failure; the CLI prints its message on one line and exits with status 2."""

"""Errors a user can act on: the CLI prints one line and exits non-zero, never a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment, worded for the user."""

    exit_code = 2

"""Media failures worded for the user: the CLI prints them as one line, never a traceback."""

from __future__ import annotations

from streamer.errors import UserError


class MediaError(UserError):
    """The input cannot be opened, read, decoded or turned into chunks."""

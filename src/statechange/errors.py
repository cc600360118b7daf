"""Errors a user can cause. The CLI prints their message (one sentence naming the file and the fix)
and exits with status 2 instead of showing a traceback."""

from __future__ import annotations

from collections.abc import Sequence


class StateChangeError(Exception):
    """Base class of every error caused by input a user gave (paths, files, names, settings)."""


N_LISTED = 5  # how many names an error message or report lists before giving a count of the rest


def listing(names: Sequence[str], limit: int = N_LISTED) -> str:
    """The first ``limit`` names for a message: ``"a, b, c, d, e and 7 more"``."""
    shown = ", ".join(list(names)[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-sentence errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

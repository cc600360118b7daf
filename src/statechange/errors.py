"""Errors a user can cause. The CLI prints their message (one sentence naming the file and the fix)
and exits with status 2 instead of showing a traceback."""

from __future__ import annotations


class StateChangeError(Exception):
    """Base class of every error caused by input a user gave (paths, files, names, settings)."""

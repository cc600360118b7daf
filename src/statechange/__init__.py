"""statechange: learn object state changes (initial state, action, end state) from uncurated videos."""

from __future__ import annotations

__version__ = "0.1.0"

from statechange.errors import StateChangeError

__all__ = ["StateChangeError", "__version__"]

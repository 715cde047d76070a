"""The core's error for its caller's mistakes (a peer's bad input is never raised)."""

from __future__ import annotations


class ProtocolError(Exception):
    """The caller used the core wrongly (a bad argument or call order)."""

"""The "did you mean ...?" hint of the agent's errors for an unknown setting."""

from __future__ import annotations

from collections.abc import Iterable


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of `known` to `key`, else ``""``.

    difflib is imported here, on an error, not at every agent's start."""
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""

"""What the agent's commands share at their entry point: running a trio main."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio


def run_trio(fn: Callable[..., Awaitable[int]], *args: Any) -> int:
    """`trio.run`, with a Ctrl-C that trio wrapped in an exception group re-raised as a
    plain KeyboardInterrupt (the `swim` entry point turns it into exit code 130)."""
    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        interrupt, rest = group.split(KeyboardInterrupt)
        if interrupt is not None and rest is None:
            raise KeyboardInterrupt from None
        raise

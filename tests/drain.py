"""Read a core's outputs one kind at a time, as the old per-kind drains did.

`Core.poll` hands out everything at once; a test often wants only the datagrams now and
the events later. These helpers poll the core into a per-core stash and take the kind
asked for, so nothing polled is lost between calls.
"""

from __future__ import annotations

import weakref

from swim.core import Core, Event, Output
from swim.core.outputs import Datagram, StreamRequest


class _Stash:
    def __init__(self) -> None:
        self.datagrams: list[Datagram] = []
        self.streams: list[StreamRequest] = []
        self.events: list[Event] = []

    def pull(self, core: Core) -> Output:
        out = core.poll()
        self.datagrams.extend(out.datagrams)
        self.streams.extend(out.streams)
        self.events.extend(out.events)
        return out


_STASHES: weakref.WeakKeyDictionary[Core, _Stash] = weakref.WeakKeyDictionary()


def _stash(core: Core) -> _Stash:
    stash = _STASHES.get(core)
    if stash is None:
        stash = _STASHES[core] = _Stash()
    return stash


def out_datagrams(core: Core) -> list[Datagram]:
    """The datagrams the core queued since they were last taken."""
    stash = _stash(core)
    stash.pull(core)
    taken, stash.datagrams = stash.datagrams, []
    return taken


def out_streams(core: Core) -> list[StreamRequest]:
    """The streams the core asked for since they were last taken."""
    stash = _stash(core)
    stash.pull(core)
    taken, stash.streams = stash.streams, []
    return taken


def out_events(core: Core) -> list[Event]:
    """The core's events since they were last taken."""
    stash = _stash(core)
    stash.pull(core)
    taken, stash.events = stash.events, []
    return taken


def next_deadline(core: Core) -> float:
    """When the core's timer is next due (outputs are kept for the other helpers)."""
    return _stash(core).pull(core).deadline

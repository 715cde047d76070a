"""Read a core's outputs one kind at a time, as the old per-kind drains did.

`Core.poll` hands out everything at once; a test often wants only the datagrams now and
the events later. These helpers poll the core into a per-core stash and take the kind
asked for, so nothing polled is lost between calls.

A stash is kept only while it holds something (a compiled `Core` cannot be weakly
referenced, so the stash holds the core itself, keyed by id, and lets go once empty).
"""

from __future__ import annotations

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


    def empty(self) -> bool:
        return not (self.datagrams or self.streams or self.events)


_STASHES: dict[int, tuple[Core, _Stash]] = {}


def _stash(core: Core) -> _Stash:
    held = _STASHES.get(id(core))
    if held is None:
        held = _STASHES[id(core)] = (core, _Stash())
    return held[1]


def _release(core: Core, stash: _Stash) -> None:
    if stash.empty():
        _STASHES.pop(id(core), None)


def out_datagrams(core: Core) -> list[Datagram]:
    """The datagrams the core queued since they were last taken."""
    stash = _stash(core)
    stash.pull(core)
    taken, stash.datagrams = stash.datagrams, []
    _release(core, stash)
    return taken


def out_streams(core: Core) -> list[StreamRequest]:
    """The streams the core asked for since they were last taken."""
    stash = _stash(core)
    stash.pull(core)
    taken, stash.streams = stash.streams, []
    _release(core, stash)
    return taken


def out_events(core: Core) -> list[Event]:
    """The core's events since they were last taken."""
    stash = _stash(core)
    stash.pull(core)
    taken, stash.events = stash.events, []
    _release(core, stash)
    return taken


def next_deadline(core: Core) -> float:
    """When the core's timer is next due (outputs are kept for the other helpers)."""
    stash = _stash(core)
    deadline = stash.pull(core).deadline
    _release(core, stash)
    return deadline

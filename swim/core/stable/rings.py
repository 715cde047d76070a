"""The K-ring monitoring overlay of a stable view (Rapid, Suresh et al., ATC 2018, §4.1).

A *configuration* is the member set of one view plus its epoch (how many view changes
led to it). Its id is a digest of both, so two members agree on the id exactly when
they hold the same member set at the same epoch; every stable-view message carries the
id and is ignored by members that hold a different one.

Over a configuration sit K pseudo-random rings: ring ``i`` orders the members by a hash
of ``(i, name)``. On every ring a member *observes* its successor (its *subject* there)
and is observed by its predecessor (its *observer* there), so each member has K
observers and K subjects, with repeats when the configuration is small. Everything is a
pure function of the configuration, so every member that holds the same configuration
computes the same overlay.

A member outside the configuration (a joiner, or a removed member asking back in) gets
K *temporary observers*: on every ring, the member that would precede it if it were
inserted (Rapid's join protocol). They probe it and vouch for it with join alerts.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from typing import Final

import attrs

#: Ids are 63-bit, so they fit the codec's unsigned integers.
_ID_MASK: Final = (1 << 63) - 1
#: Overlays kept by configuration id (pure values, shared by the members of a process).
_CACHE_MAX: Final = 64


def config_id(members: Iterable[str], epoch: int) -> int:
    """The id of the configuration `members` at `epoch`: the same everywhere.

    A BLAKE2b digest of the epoch, the member count and the sorted names, each name
    prefixed by its length (so no two different sets give the same input)."""
    names = sorted(members)
    h = hashlib.blake2b(digest_size=8, person=b"swim-stable")
    h.update(f"{epoch}:{len(names)}:".encode())
    for name in names:
        raw = name.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(2, "big"))
        h.update(raw)
    return int.from_bytes(h.digest(), "big") & _ID_MASK


@attrs.frozen(cache_hash=True)
class Configuration:
    """One view: its members (sorted), its epoch and its id."""

    members: tuple[str, ...]
    epoch: int
    id: int

    @classmethod
    def of(cls, members: Iterable[str], epoch: int = 0) -> Configuration:
        """The configuration of `members` (any order, no repeats) at `epoch`."""
        names = tuple(sorted(set(members)))
        if epoch < 0:
            raise ValueError("epoch must be >= 0")
        return cls(names, epoch, config_id(names, epoch))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        i = bisect.bisect_left(self.members, name)
        return i < len(self.members) and self.members[i] == name

    def __len__(self) -> int:
        return len(self.members)

    def apply(self, cut: Iterable[tuple[str, bool]]) -> Configuration:
        """The next configuration: `cut`'s ``(name, True)`` added, ``(name, False)``
        removed, at the next epoch."""
        names = set(self.members)
        for name, up in cut:
            if up:
                names.add(name)
            else:
                names.discard(name)
        return Configuration.of(names, self.epoch + 1)


def _ring_key(ring: int, name: str) -> bytes:
    return hashlib.blake2b(f"{ring}/{name}".encode("utf-8", "surrogatepass"),
                           digest_size=8, person=b"swim-ring").digest()


class Rings:
    """The K rings over one configuration: observers and subjects of every member,
    temporary observers of outsiders. Build it with `rings_of` (cached)."""

    def __init__(self, configuration: Configuration, k: int) -> None:
        if k < 1:
            raise ValueError("k (rings) must be >= 1")
        self.configuration: Final = configuration
        self.k: Final = k
        # Per ring: the sorted (key, name) pairs, the names in ring order, and each
        # name's position.
        self._keys: list[list[tuple[bytes, str]]] = []
        self._order: list[list[str]] = []
        self._pos: list[dict[str, int]] = []
        for i in range(k):
            keyed = sorted((_ring_key(i, m), m) for m in configuration.members)
            order = [m for _, m in keyed]
            self._keys.append(keyed)
            self._order.append(order)
            self._pos.append({m: p for p, m in enumerate(order)})

    def ring(self, i: int) -> list[str]:
        """Ring `i`'s members in ring order (a copy)."""
        return list(self._order[i])

    def observers_of(self, name: str) -> tuple[str, ...]:
        """The K observers of `name`, ring by ring (ring ``i`` at index ``i``).

        For a member: its predecessor on each ring (empty if it is alone). For an
        outsider: its temporary observers, the members that would precede it.
        """
        n = len(self.configuration)
        if name in self.configuration:
            if n < 2:
                return ()
            return tuple(self._order[i][self._pos[i][name] - 1] for i in range(self.k))
        if n == 0:
            return ()
        out = []
        for i in range(self.k):
            at = bisect.bisect_left(self._keys[i], (_ring_key(i, name), name))
            out.append(self._order[i][at - 1])
        return tuple(out)

    def subjects_of(self, name: str) -> tuple[str, ...]:
        """The K subjects of member `name` (its successor on each ring); empty if it
        is alone or not a member."""
        n = len(self.configuration)
        if n < 2 or name not in self.configuration:
            return ()
        return tuple(self._order[i][(self._pos[i][name] + 1) % n] for i in range(self.k))

    def rings_observed_by(self, observer: str, subject: str) -> tuple[int, ...]:
        """The rings on which `observer` observes `subject` (member or outsider)."""
        return tuple(i for i, o in enumerate(self.observers_of(subject)) if o == observer)


_cache: dict[tuple[int, int], Rings] = {}


def rings_of(configuration: Configuration, k: int) -> Rings:
    """The overlay of `configuration` with `k` rings, built once per process and
    shared (it is a pure function of the configuration)."""
    key = (configuration.id, k)
    rings = _cache.get(key)
    if rings is None or rings.configuration != configuration:
        rings = Rings(configuration, k)
        if len(_cache) >= _CACHE_MAX:
            del _cache[next(iter(_cache))]
        _cache[key] = rings
    return rings

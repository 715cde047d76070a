"""A whole configuration for a member that is behind: split into `ViewSync` parts, and
put back together (checked against its id) on the other side.

`sync_parts` splits the sorted member names into parts of at most `PART_BYTES` bytes of
names, so a few parts share one datagram; `SyncAssembly` keeps the parts of the newest
configuration offered and returns it once every part is in and the whole has the id
it was sent under (anything else is refused and counted in `rejected`).
"""

from __future__ import annotations

from typing import Final

from swim.core.messages import ViewSync
from swim.core.stable.rings import Configuration

#: Bytes of names (UTF-8, plus their CBOR headers) per part.
PART_BYTES: Final = 600


def sync_parts(conf: Configuration) -> list[ViewSync]:
    """`conf` as `ViewSync` parts, in order."""
    chunks: list[list[str]] = [[]]
    size = 0
    for name in conf.members:
        cost = len(name.encode("utf-8", "surrogatepass")) + 2
        if chunks[-1] and size + cost > PART_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(name)
        size += cost
    return [ViewSync(conf.id, conf.epoch, i, len(chunks), tuple(c))
            for i, c in enumerate(chunks)]


class SyncAssembly:
    """The parts received of the newest configuration offered."""

    def __init__(self) -> None:
        self._key: tuple[int, int, int] | None = None
        self._parts: dict[int, tuple[str, ...]] = {}
        #: Parts refused (older than the one being assembled) and wholes that did not
        #: match their id.
        self.rejected = 0

    def add(self, part: ViewSync) -> Configuration | None:
        """Take one part; the configuration once it is whole and matches its id."""
        key = (part.config_id, part.epoch, part.parts)
        if key != self._key:
            if self._key is not None and self._key[1] > part.epoch:
                self.rejected += 1
                return None
            self._key = key
            self._parts = {}
        self._parts[part.part] = part.names
        if len(self._parts) < part.parts:
            return None
        parts, self._key, self._parts = self._parts, None, {}
        names = [n for i in range(part.parts) for n in parts[i]]
        conf = Configuration.of(names, part.epoch)
        if conf.id != part.config_id or len(conf) != len(names):
            self.rejected += 1
            return None
        return conf

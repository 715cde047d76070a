"""The placement ring (`swim.ring`) as a client of an agent sees it: member records, as
``swim members --json`` prints them, back into `MemberState` values and a `Ring`.

A ring built from an agent's member list is the ring every member holding the same
membership builds (placement depends only on names, weights, zones, statuses and the
health tag), so the demo and the tests can show and check placement from outside the
agents.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from swim.agent import addresses
from swim.agent.output import STATUS_NAMES
from swim.agent.tags import encode_tags
from swim.core.messages import MemberState
from swim.ring import Ring

_STATUS_OF = {text: status for status, text in STATUS_NAMES.items()}


def member_state(record: Mapping[str, Any]) -> MemberState:
    """The member a record describes (its tags re-encoded as its metadata). Raises
    `ValueError` for a record that is not one `swim members --json` prints."""
    try:
        status = _STATUS_OF[record["status"]]
        addr = addresses.parse_host_port(str(record["addr"]))
        return MemberState(
            str(record["name"]), addr, int(record["incarnation"]), status,
            encode_tags(dict(record.get("tags") or {})),
        )
    except (KeyError, TypeError, addresses.AddressError) as exc:
        raise ValueError(f"not a member record: {record!r:.80} ({exc})") from None


def ring_of(records: Iterable[Mapping[str, Any]], **options: Any) -> Ring:
    """The ring of the members in `records` (`Ring.build`'s keywords in `options`;
    by default alive and suspect members that are not critical)."""
    return Ring.build([member_state(r) for r in records], **options)


def owned_counts(ring: Ring, keys: Iterable[str | bytes]) -> dict[str, int]:
    """Keys owned per member of `ring` (every member listed, in name order)."""
    counts = dict.fromkeys(ring.members, 0)
    if counts:
        for key in keys:
            counts[ring.owner(key)] += 1
    return counts


def moves_text(old: Ring, new: Ring, keys: Iterable[str | bytes], member: str) -> str:
    """How many of `keys` moved from `old` to `new`, by (from, to) pair, and whether
    every move was from or to `member`: ``"1960 keys moved (n3->n1 490, ...); every one
    from or to n3"``."""
    diff = Ring.diff(old, new, list(keys))
    pairs = Counter((m.old_owner, m.new_owner) for m in diff.moves)
    moved = len(diff.moves)
    text = f"{moved} keys moved (" + ", ".join(
        f"{a}->{b} {c}" for (a, b), c in sorted(pairs.items(), key=lambda kv: str(kv[0]))
    ) + ")"
    others = sum(c for (a, b), c in pairs.items() if member not in (a, b))
    return text + (f"; every one from or to {member}" if not others else
                   f"; {others} between other members")

"""The placement ring (`swim.ring`) as a client of an agent sees it: member records, as
``swim members --json`` prints them, back into `MemberState` values and a `Ring`.

A ring built from an agent's member list is the ring every member holding the same
membership builds (placement depends only on names, weights, zones, statuses and the
health tag), so the demo and the tests can show and check placement from outside the
agents.
"""

from __future__ import annotations

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

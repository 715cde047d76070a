"""SWIM's incarnation precedence as a table (memberlist's reading of it).

`PRECEDENCE` maps (kind of news, status we hold or None if the member is unknown, the
news's incarnation against ours) to the `Transition` the membership table makes for
news about *another* member at its known address. News about ourselves, news from
another address (a name conflict or a reclaim) and implausible incarnation jumps are
decided before the table is consulted (see membership.py), and so is one more rule: a
failed member's own-word leave (a forced leave) turns *dead* into *left*. A test walks
every row.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from swim.core.messages import MemberStatus

ALIVE: Final = MemberStatus.ALIVE
SUSPECT: Final = MemberStatus.SUSPECT
DEAD: Final = MemberStatus.DEAD
LEFT: Final = MemberStatus.LEFT


class NewsKind(enum.Enum):
    """The kind of membership news, for the precedence table."""

    # Members are singletons compared by identity, so the identity hash (in C) is the
    # right one; `Enum`'s own hashes the name in Python, on every table lookup.
    __hash__ = object.__hash__

    #: ``Alive(l, i)``.
    ALIVE = "alive"
    #: ``Suspect(l, i, accuser)``.
    SUSPECT = "suspect"
    #: ``Dead(l, i, accuser)`` (a leave when the accuser is l).
    DEAD = "dead"


class Order(enum.Enum):
    """The news's incarnation against the one held."""

    # Members are singletons compared by identity, so the identity hash (in C) is the
    # right one; `Enum`'s own hashes the name in Python, on every table lookup.
    __hash__ = object.__hash__

    #: Lower than the one held.
    OLDER = "older"
    #: Equal.
    SAME = "same"
    #: Higher.
    NEWER = "newer"


class Transition(enum.Enum):
    """What news about another member does to the table (see `PRECEDENCE`)."""

    #: Nothing changes.
    IGNORE = "ignore"
    #: An unknown member appears (`MemberJoined`).
    ADD = "add"
    #: A dead or left member is alive again (`MemberJoined`).
    REVIVE = "revive"
    #: A suspect refuted (`MemberAlive`).
    REFUTED = "refuted"
    #: An alive member's newer announcement (`MemberUpdated` if its metadata changed).
    UPDATE = "update"
    #: An alive member becomes suspect (`MemberSuspected`).
    SUSPECT = "suspect"
    #: Another accuser of a suspect: a Lifeguard confirmation, if new.
    CONFIRM = "confirm"
    #: Declared dead, or left if it says so itself (`MemberFailed` / `MemberLeft`).
    FAIL = "fail"
    #: A stale suspicion of a member held dead or left: gossip that news again.
    REGOSSIP = "regossip"
    #: A member held dead or left shows itself alive at an old incarnation: tell it.
    NOTIFY = "notify"


def _rows() -> dict[tuple[NewsKind, MemberStatus | None, Order], Transition]:
    t = Transition
    older, same, newer = Order.OLDER, Order.SAME, Order.NEWER
    per_status: dict[NewsKind, dict[MemberStatus | None, tuple[Transition, ...]]] = {
        #                      older        same         newer
        NewsKind.ALIVE: {
            None:            (t.ADD,      t.ADD,      t.ADD),
            ALIVE:           (t.IGNORE,   t.IGNORE,   t.UPDATE),
            SUSPECT:         (t.IGNORE,   t.IGNORE,   t.REFUTED),
            DEAD:            (t.NOTIFY,   t.NOTIFY,   t.REVIVE),
            LEFT:            (t.NOTIFY,   t.NOTIFY,   t.REVIVE),
        },
        NewsKind.SUSPECT: {
            None:            (t.IGNORE,   t.IGNORE,   t.IGNORE),
            ALIVE:           (t.IGNORE,   t.SUSPECT,  t.SUSPECT),
            SUSPECT:         (t.IGNORE,   t.CONFIRM,  t.CONFIRM),
            DEAD:            (t.REGOSSIP, t.REGOSSIP, t.IGNORE),
            LEFT:            (t.REGOSSIP, t.REGOSSIP, t.IGNORE),
        },
        NewsKind.DEAD: {
            None:            (t.IGNORE,   t.IGNORE,   t.IGNORE),
            ALIVE:           (t.IGNORE,   t.FAIL,     t.FAIL),
            SUSPECT:         (t.IGNORE,   t.FAIL,     t.FAIL),
            DEAD:            (t.IGNORE,   t.IGNORE,   t.IGNORE),
            LEFT:            (t.IGNORE,   t.IGNORE,   t.IGNORE),
        },
    }
    return {
        (kind, status, order): row[k]
        for kind, statuses in per_status.items()
        for status, row in statuses.items()
        for k, order in enumerate((older, same, newer))
    }


#: SWIM's precedence, as memberlist applies it, for news about *another* member at its
#: known address: (kind, status held or None if unknown, order) -> transition. News
#: about ourselves, a different address (conflict or reclaim) and implausible
#: incarnation jumps are decided before the table is consulted.
PRECEDENCE: Final[Mapping[tuple[NewsKind, MemberStatus | None, Order], Transition]] = _rows()


def order_of(news: int, held: int) -> Order:
    """How incarnation `news` compares with the `held` one."""
    return Order.NEWER if news > held else Order.SAME if news == held else Order.OLDER

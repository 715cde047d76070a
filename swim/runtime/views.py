"""Views of the membership: filters by status, tags and name, and `MemberView`.

Pure code (no trio, no clock), shared by `Node`, `ThreadedNode` and `swim.aio.Node`:
their ``members(status=..., tags=..., name=...)`` filters and the snapshot their
``wait_for`` predicates are given.

Filters, each optional, all of which a member must pass:

* ``status``: a `MemberStatus` or a collection of them;
* ``tags``: tag keys mapped to shell-style patterns (`fnmatch.fnmatchcase`, as in query
  filters): the member must have every key, with a value matching its pattern. A member
  whose metadata is not a tag block (`swim.core.tags`) has no tags;
* ``name``: a shell-style pattern of the member's name.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Final, overload

import attrs

from swim.core.messages import MemberState, MemberStatus
from swim.core.tags import tags_match, tags_of

#: A status filter: one status, or any of several.
StatusFilter = MemberStatus | Collection[MemberStatus]

#: The statuses of members not known to be down: alive, or suspected but not yet failed
#: (a suspect is usually alive, and most suspicions are refuted).
UP_STATUSES: Final = frozenset({MemberStatus.ALIVE, MemberStatus.SUSPECT})


@overload
def as_statuses(status: StatusFilter) -> frozenset[MemberStatus]: ...
@overload
def as_statuses(status: None) -> None: ...


def as_statuses(status: StatusFilter | None) -> frozenset[MemberStatus] | None:
    """A status filter as a set of statuses (None stays None: no filter)."""
    if status is None:
        return None
    if isinstance(status, MemberStatus):
        return frozenset({status})
    statuses = frozenset(status)
    for value in statuses:
        if not isinstance(value, MemberStatus):
            raise TypeError(f"status filters are MemberStatus values, got {value!r}")
    return statuses


def filter_members(
    members: Iterable[MemberState],
    *,
    status: StatusFilter | None = None,
    tags: Mapping[str, str] | None = None,
    name: str | None = None,
) -> list[MemberState]:
    """The members that pass every filter given (see the module docs), in their order."""
    statuses = as_statuses(status)
    found = []
    for member in members:
        if statuses is not None and member.status not in statuses:
            continue
        if name is not None and not fnmatch.fnmatchcase(member.name, name):
            continue
        if tags and not tags_match(tags_of(member.meta), tags):
            continue
        found.append(member)
    return found


def _as_tuple(members: Iterable[MemberState]) -> tuple[MemberState, ...]:
    return tuple(members)


@attrs.frozen
class MemberView(Sequence[MemberState]):
    """An immutable snapshot of a node's members, itself included, in the node's order.

    A sequence of `MemberState` (``len(view)``, ``for member in view``, ``view[0]``),
    with lookups by name and the same filters as ``Node.members``. ``wait_for``
    predicates are given one; every filter returns another view.
    """

    members: tuple[MemberState, ...] = attrs.field(converter=_as_tuple)

    def __len__(self) -> int:
        return len(self.members)

    @overload
    def __getitem__(self, index: int) -> MemberState: ...
    @overload
    def __getitem__(self, index: slice) -> MemberView: ...

    def __getitem__(self, index: int | slice) -> MemberState | MemberView:
        if isinstance(index, slice):
            return MemberView(self.members[index])
        return self.members[index]

    def __iter__(self) -> Iterator[MemberState]:
        return iter(self.members)

    def filter(
        self,
        *,
        status: StatusFilter | None = None,
        tags: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> MemberView:
        """The members that pass every filter given (see the module docs)."""
        return MemberView(filter_members(self.members, status=status, tags=tags, name=name))

    def alive(self) -> MemberView:
        """The members whose status is `MemberStatus.ALIVE`."""
        return self.filter(status=MemberStatus.ALIVE)

    def up(self) -> MemberView:
        """The members not known to be down: alive or suspect (`UP_STATUSES`)."""
        return self.filter(status=UP_STATUSES)

    def names(self) -> list[str]:
        """The members' names, in the view's order."""
        return [member.name for member in self.members]

    def get(self, name: str) -> MemberState | None:
        """The member called `name`, or None if the view has none."""
        for member in self.members:
            if member.name == name:
                return member
        return None

    def status_of(self, name: str) -> MemberStatus | None:
        """The status of member `name`, or None if the view has none."""
        member = self.get(name)
        return None if member is None else member.status

    def tags(self, name: str) -> dict[str, str]:
        """The tags of member `name` (empty if its metadata holds none); raises
        `LookupError` if the view has no such member."""
        member = self.get(name)
        if member is None:
            raise LookupError(f"unknown member {name!r}")
        return tags_of(member.meta)

"""The simulated network as a value: link classes with named options, zones and
permanent one-way loss.

A `NetworkModel` is a frozen description; `NetworkModel.links` turns it into the one link
model every in-memory network uses (`transport.links.Links`): the engine builds it over
member indices, trio mode over addresses for the in-memory transport, so both see the
same network. `LinkClass` lives in `transport.links` and is re-exported here. Every
datagram gets, independently (the model's documented order of decisions and draws):

* a one-way delay ``delay_min_s + jitter`` where the jitter is exponential (mean
  ``jitter_s``), uniform on ``[0, 2 * jitter_s]`` or zero, per link class; random delays
  reorder packets naturally;
* loss with probability ``loss`` (plus any one-way loss configured between two members);
* duplication with probability ``duplicate`` (the copy gets its own delay).

Streams (push-pull, fallback ping, reliable user messages) model TCP: they are not lost
at random (``stream_loss`` is 0 unless set), take one delay each way, and fail (after
``Config.tcp_timeout_s``) when the peer is down or a partition or a one-way block
separates the two ends in either direction.

Members are spread over ``zones`` (member ``i`` is in zone ``i % zones``); links inside a
zone use `NetworkModel.link`, links between zones `NetworkModel.cross_zone`. Partitions,
clogged links and time-limited one-way loss are scheduled faults (see
`simulations.faults`) that the engine or trio mode applies to the same model at run time.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import TypeVar

import attrs

from transport.links import Jitter, LinkClass, Links

K = TypeVar("K", bound=Hashable)

__all__ = ["Jitter", "LinkClass", "NetworkModel", "OneWayLoss"]


@attrs.frozen(kw_only=True)
class OneWayLoss:
    """Datagrams from member `src` to member `dst` (only that direction) are lost with
    probability `loss`, for the whole run (see `faults.LossWindow` for a timed one)."""

    src: int
    dst: int
    loss: float = attrs.field(
        default=1.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )


@attrs.frozen(kw_only=True)
class NetworkModel:
    """The static network: link classes and permanent asymmetric loss."""

    #: Links between members of the same zone.
    link: LinkClass = attrs.field(factory=LinkClass.lan)
    #: Number of zones; member ``i`` is in zone ``i % zones``.
    zones: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    #: Links between zones (None: the same as `link`).
    cross_zone: LinkClass | None = None
    #: Permanent one-way loss between chosen members.
    one_way: tuple[OneWayLoss, ...] = ()

    @classmethod
    def lan(cls) -> NetworkModel:
        """One LAN (`LinkClass.lan`)."""
        return cls(link=LinkClass.lan())

    @classmethod
    def wan(cls) -> NetworkModel:
        """Every link a WAN link (`LinkClass.wan`)."""
        return cls(link=LinkClass.wan())

    @classmethod
    def local(cls) -> NetworkModel:
        """Every member on one host (`LinkClass.local`)."""
        return cls(link=LinkClass.local())

    @classmethod
    def profile(cls, name: str) -> NetworkModel:
        """The model matching a `Config` profile name: "lan", "wan" or "local"."""
        profiles = {"lan": cls.lan, "wan": cls.wan, "local": cls.local}
        try:
            return profiles[name]()
        except KeyError:
            raise ValueError(
                f"unknown network profile {name!r}; choose one of {', '.join(profiles)}"
            ) from None

    def with_loss(self, loss: float) -> NetworkModel:
        """The same model with independent loss `loss` on every link class."""
        cross = None if self.cross_zone is None else attrs.evolve(self.cross_zone, loss=loss)
        return attrs.evolve(self, link=attrs.evolve(self.link, loss=loss), cross_zone=cross)

    def with_duplicates(self, duplicate: float) -> NetworkModel:
        """The same model with duplication probability `duplicate` on every link class."""
        cross = None if self.cross_zone is None else attrs.evolve(
            self.cross_zone, duplicate=duplicate)
        return attrs.evolve(
            self, link=attrs.evolve(self.link, duplicate=duplicate), cross_zone=cross)

    def link_between(self, src: int, dst: int) -> LinkClass:
        """The link class used from member `src` to member `dst`."""
        if self.cross_zone is None or src % self.zones == dst % self.zones:
            return self.link
        return self.cross_zone

    def links(self, rng: random.Random, endpoints: Sequence[K]) -> Links[K]:
        """This model as a `transport.links.Links` over `endpoints` (member ``i`` is
        ``endpoints[i]``: the engine passes indices, trio mode addresses), drawing from
        `rng`. Every link class, zone and permanent one-way loss carries over."""
        zones = {key: i % self.zones for i, key in enumerate(endpoints)} \
            if self.cross_zone is not None and self.zones > 1 else None
        one_way: dict[tuple[K, K], float] = {}
        for ow in self.one_way:
            key = (endpoints[ow.src], endpoints[ow.dst])
            one_way[key] = max(one_way.get(key, 0.0), ow.loss)
        return Links(rng=rng, link=self.link,
                     cross_zone=self.cross_zone if zones is not None else None,
                     zones=zones, one_way=one_way)

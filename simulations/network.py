"""The simulated network: link classes with named options, as values.

A `NetworkModel` is a frozen description; the engine samples it with the run's network
`random.Random`. Every datagram gets, independently:

* a one-way delay ``delay_min_s + jitter`` where the jitter is exponential (mean
  ``jitter_s``), uniform on ``[0, 2 * jitter_s]`` or zero, per link class; random delays
  reorder packets naturally;
* loss with probability ``loss`` (plus any one-way loss configured between two members);
* duplication with probability ``duplicate`` (the copy gets its own delay).

Streams (push-pull, fallback ping, reliable user messages) model TCP: they are never
lost at random, take one delay each way, and fail (after ``Config.tcp_timeout_s``) when
the peer is down or a partition separates the two ends.

Members are spread over ``zones`` (member ``i`` is in zone ``i % zones``); links inside a
zone use `NetworkModel.link`, links between zones `NetworkModel.cross_zone`. Partitions,
clogged links and time-limited one-way loss are scheduled faults (see
`simulations.faults`), not part of the static model.
"""

from __future__ import annotations

from typing import Literal

import attrs

Jitter = Literal["exponential", "uniform", "none"]


@attrs.frozen(kw_only=True)
class LinkClass:
    """Delay, loss and duplication of one kind of link."""

    #: Name shown in results ("lan", "wan"...).
    name: str = "lan"
    #: Fixed part of the one-way delay.
    delay_min_s: float = attrs.field(default=0.0002, validator=attrs.validators.ge(0))
    #: Mean of the random part of the one-way delay.
    jitter_s: float = attrs.field(default=0.0003, validator=attrs.validators.ge(0))
    #: Distribution of the random part.
    jitter: Jitter = attrs.field(
        default="exponential", validator=attrs.validators.in_(("exponential", "uniform", "none"))
    )
    #: Independent probability that a datagram is lost.
    loss: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )
    #: Independent probability that a datagram is delivered twice.
    duplicate: float = attrs.field(
        default=0.0, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )

    @classmethod
    def lan(cls) -> LinkClass:
        """A data-centre LAN: 0.2 ms plus exponential jitter of mean 0.3 ms."""
        return cls(name="lan", delay_min_s=0.0002, jitter_s=0.0003)

    @classmethod
    def wan(cls) -> LinkClass:
        """A wide-area link: 30 ms plus uniform jitter of mean 10 ms."""
        return cls(name="wan", delay_min_s=0.030, jitter_s=0.010, jitter="uniform")

    @classmethod
    def local(cls) -> LinkClass:
        """One host's loopback: 50 us plus exponential jitter of mean 50 us."""
        return cls(name="local", delay_min_s=0.00005, jitter_s=0.00005)

    def mean_delay_s(self) -> float:
        """Expected one-way delay."""
        return self.delay_min_s + (0.0 if self.jitter == "none" else self.jitter_s)


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

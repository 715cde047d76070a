"""Protocol configuration: memberlist's numbers as named profiles.

`Config.lan()`, `Config.wan()` and `Config.local()` reproduce HashiCorp memberlist's
`DefaultLANConfig`, `DefaultWANConfig` and `DefaultLocalConfig`. Every Lifeguard
extension has a switch so plain SWIM can be compared with SWIM + Lifeguard
(`Config.lan().plain_swim()`).
"""

from __future__ import annotations

from typing import Any

import attrs

from swim.core.stable.params import StableParams

#: Largest node metadata a member may carry (bytes), as memberlist's MetaMaxSize.
META_MAX_BYTES = 512
#: Longest member name (bytes of UTF-8).
NAME_MAX_BYTES = 255




@attrs.frozen(kw_only=True)
class Config:
    """Timing, fan-out and feature switches for one member.

    Durations are in seconds and end in ``_s``. Build one with a named profile and adjust
    with :func:`attrs.evolve`, e.g. ``attrs.evolve(Config.lan(), indirect_probes=2)``.
    """

    #: Base protocol period T: one probe per interval (scaled by local health).
    probe_interval_s: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    #: How long to wait for a direct ack before asking helpers (ping-req).
    probe_timeout_s: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    #: k, the number of helpers asked to probe indirectly.
    indirect_probes: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    #: Suspicion timeout multiplier (alpha in Lifeguard).
    suspicion_mult: int = attrs.field(default=4, validator=attrs.validators.gt(0))
    #: Maximum suspicion timeout as a multiple of the minimum (beta in Lifeguard).
    suspicion_max_timeout_mult: int = attrs.field(default=6, validator=attrs.validators.gt(0))
    #: Each update is sent retransmit_mult * ceil(log10(n + 1)) times.
    retransmit_mult: int = attrs.field(default=4, validator=attrs.validators.gt(0))
    #: The same for user broadcasts. Membership news is repaired by probing and
    #: push-pull; a user broadcast has only its own epidemic (and the next push-pull's
    #: replay), so it gets twice memberlist's budget: at retransmit_mult = 2 one in
    #: three broadcasts missed a member of a 5-member cluster, at 4 none in 200 runs.
    user_retransmit_mult: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    #: Period of the gossip timer that pushes queued news to random members.
    gossip_interval_s: float = attrs.field(default=0.2, validator=attrs.validators.gt(0))
    #: Members each gossip round sends to.
    gossip_nodes: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    #: Base period of full-state push-pull anti-entropy (scaled up for n > 32).
    push_pull_interval_s: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    #: How long dead/left members still receive gossip before being reaped.
    gossip_to_the_dead_s: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    #: Timeout for stream (TCP) exchanges; the runtime enforces it.
    tcp_timeout_s: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    #: Local health score range is [0, awareness_max_multiplier - 1].
    awareness_max_multiplier: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    #: Largest datagram the core builds (bytes, before any encryption overhead).
    packet_budget: int = attrs.field(default=1400)
    #: Share of each packet's piggyback space reserved for user broadcasts, so that
    #: membership news cannot starve them in large clusters.
    user_broadcast_share: float = attrs.field(default=0.25)
    #: A dead or left name may be claimed by a new address after this long;
    #: None never allows it before the entry is reaped (memberlist's default).
    dead_node_reclaim_s: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )
    #: Largest incarnation jump accepted about a known member; a larger one is treated as
    #: hostile and dropped (defends against memberlist #358).
    incarnation_window: int = attrs.field(default=1 << 20, validator=attrs.validators.gt(0))
    #: Most members the table holds; news of more is dropped and counted (a bound on
    #: memory and on probing work if a flood of forged members arrives).
    max_members: int = attrs.field(
        default=100_000, validator=[attrs.validators.gt(1), attrs.validators.le(250_000)]
    )
    #: Most members not yet known taken from one push-pull we did not ask a seed for
    #: (a join response is bounded by `max_members` alone); the rest are dropped and
    #: counted, and arrive by gossip or later exchanges if real.
    push_pull_new_max: int = attrs.field(default=1024, validator=attrs.validators.ge(0))
    #: A query's default timeout is ``gossip_interval * query_timeout_mult *
    #: ceil(log10(n + 1))`` (Serf's formula).
    query_timeout_mult: int = attrs.field(default=16, validator=attrs.validators.gt(0))
    #: Largest query payload and largest answer (bytes), as Serf's defaults.
    query_size_limit: int = attrs.field(default=1024, validator=attrs.validators.ge(0))
    query_response_size_limit: int = attrs.field(default=1024, validator=attrs.validators.ge(0))
    #: How many user-broadcast ids to remember for deduplication.
    user_broadcast_memory: int = attrs.field(default=4096, validator=attrs.validators.gt(0))
    #: How many recent user broadcasts each push-pull carries, so members that missed one
    #: by gossip get it at the next exchange (joiners take them as already seen, not
    #: delivered). 0 disables.
    user_broadcast_replay: int = attrs.field(
        default=32, validator=[attrs.validators.ge(0), attrs.validators.le(256)]
    )
    #: Most membership news queued at once; past it the most-sent news is dropped
    #: (push-pull repairs what is lost). Bounds memory when thousands join at once.
    broadcast_queue_depth: int = attrs.field(default=4096, validator=attrs.validators.gt(0))
    #: How often to try a full-state exchange with one failed (not left) member after it
    #: was reaped, so that partitions longer than gossip_to_the_dead_s heal (Serf's
    #: reconnect). 0 disables.
    reconnect_interval_s: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    #: How long a failed member is remembered for reconnection attempts.
    reconnect_timeout_s: float = attrs.field(
        default=24 * 3600.0, validator=attrs.validators.ge(0)
    )

    #: K, the independent confirmations that bring a suspicion's timeout down to its
    #: minimum (Lifeguard); None: ``suspicion_mult - 2``, as memberlist.
    suspicion_confirmations: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(0))
    )

    # --- switches (all on = SWIM + Lifeguard as memberlist runs it) ---
    #: Helpers send nacks when the target is silent (Lifeguard).
    nacks: bool = True
    #: Local health awareness scales the probe interval (Lifeguard LHA-probe).
    awareness: bool = True
    #: Suspicion timeout shrinks with independent confirmations (Lifeguard LHA-suspicion).
    dynamic_suspicion: bool = True
    #: Piggyback a suspicion on the ping to the suspect (Lifeguard buddy system).
    buddy_system: bool = True
    #: Separate gossip timer (otherwise news rides only on probe traffic, as in SWIM).
    gossip_timer: bool = True
    #: Periodic push-pull anti-entropy (join always uses one exchange).
    push_pull: bool = True
    #: TCP ping to the target in parallel with indirect probes.
    tcp_fallback_ping: bool = True
    #: Vivaldi network coordinates ride on direct acks (Serf's `serf rtt`).
    coordinates: bool = True
    #: SWIM's suspicion mechanism; off, a failed probe declares the target dead at once
    #: (the paper's basic SWIM).
    suspicion: bool = True
    #: Local health also scales the probe timeout, not only the interval (Lifeguard
    #: paper's LHM; memberlist scales only the interval).
    awareness_probe_timeout: bool = False
    #: Probe targets: "round_robin" over a shuffled list (SWIM's improvement) or
    #: "uniform" random choice each period (the original analysis).
    probe_selection: str = attrs.field(
        default="round_robin", validator=attrs.validators.in_(("round_robin", "uniform"))
    )
    #: Every member starts its probe periods on the same global grid (multiples of the
    #: period), in lock step, as SWIM's analysis assumes; otherwise each staggers its
    #: start at random.
    synchronous_rounds: bool = False
    #: The gossip timer ticks on its own every gossip interval, as memberlist's ticker
    #: does, so news that arrives waits for the next tick. Off (our default), a member
    #: that was quiet for longer than an interval gossips news as soon as it arrives:
    #: faster dissemination, the same number of packets.
    gossip_ticker: bool = False

    #: Membership mode: "swim" (SWIM + Lifeguard, the default) or "stable" (Rapid-style
    #: stable views: K observers per member, cut detection, one view change per cut;
    #: see `swim.core.stable` and `Config.stable_views`).
    membership_mode: str = attrs.field(
        default="swim", validator=attrs.validators.in_(("swim", "stable"))
    )
    #: The stable-view mode's K, H, L and timers (read only in that mode).
    stable: StableParams = attrs.field(factory=StableParams)

    def __attrs_post_init__(self) -> None:
        if self.probe_timeout_s > self.probe_interval_s:
            raise ValueError("probe_timeout_s must not exceed probe_interval_s")
        if not 64 <= self.packet_budget <= 65_000:
            raise ValueError(f"packet_budget must be in [64, 65000], got {self.packet_budget}")
        if not 0.0 <= self.user_broadcast_share <= 1.0:
            raise ValueError("user_broadcast_share must be within [0, 1]")
        if self.suspicion_mult < 1 or self.suspicion_max_timeout_mult < 1:
            raise ValueError("suspicion multipliers must be >= 1")

    @classmethod
    def lan(cls) -> Config:
        """memberlist's DefaultLANConfig: a LAN, 1 s protocol period."""
        return cls()

    @classmethod
    def wan(cls) -> Config:
        """memberlist's DefaultWANConfig: slower, more tolerant timing for WANs."""
        return cls(
            probe_interval_s=5.0,
            probe_timeout_s=3.0,
            suspicion_mult=6,
            gossip_interval_s=0.5,
            gossip_nodes=4,
            push_pull_interval_s=60.0,
            gossip_to_the_dead_s=60.0,
            tcp_timeout_s=30.0,
        )

    @classmethod
    def local(cls) -> Config:
        """memberlist's DefaultLocalConfig: one host or a fast local network."""
        return cls(
            probe_timeout_s=0.2,
            indirect_probes=1,
            suspicion_mult=3,
            retransmit_mult=2,
            user_retransmit_mult=4,
            gossip_interval_s=0.1,
            push_pull_interval_s=15.0,
            gossip_to_the_dead_s=15.0,
            tcp_timeout_s=1.0,
        )

    @classmethod
    def profile(cls, name: str) -> Config:
        """The named profile: ``"lan"``, ``"wan"`` or ``"local"``."""
        profiles = {"lan": cls.lan, "wan": cls.wan, "local": cls.local}
        try:
            return profiles[name]()
        except KeyError:
            raise ValueError(
                f"unknown profile {name!r}; choose one of {', '.join(profiles)}"
            ) from None

    @classmethod
    def paper_lifeguard(cls) -> Config:
        """The Lifeguard paper's setting (Dadgar et al. 2017): memberlist's LAN timing
        with alpha = 5, beta = 6, K = 3, every Lifeguard extension on, the gossip timer
        on memberlist's free-running ticker, and no TCP fallback ping (in both presets,
        so the comparison isolates Lifeguard)."""
        return cls(
            suspicion_mult=5, suspicion_max_timeout_mult=6, suspicion_confirmations=3,
            gossip_ticker=True, tcp_fallback_ping=False,
        )

    @classmethod
    def paper_swim(cls) -> Config:
        """The paper's SWIM baseline: the same timing and gossip, alpha = 5, beta = 1 (a
        fixed suspicion timeout), K = 0, and every Lifeguard extension off."""
        return attrs.evolve(
            cls.paper_lifeguard(), suspicion_max_timeout_mult=1, suspicion_confirmations=0,
            nacks=False, awareness=False, dynamic_suspicion=False, buddy_system=False,
        )

    @classmethod
    def stable_views(cls, base: Config | None = None, **stable: Any) -> Config:
        """`base` (default: the LAN profile) in the stable-view membership mode.

        Each member probes its K subjects in turn, so the protocol period is halved
        (a subject is probed every K/2 base periods) and the probe timeout kept within
        half of it; the TCP fallback ping is off (the K observers are the redundancy).
        `stable` overrides `StableParams` fields, e.g. ``Config.stable_views(h=8)``.
        """
        base = cls.lan() if base is None else base
        interval = base.probe_interval_s / 2
        return attrs.evolve(
            base, membership_mode="stable", probe_interval_s=interval,
            probe_timeout_s=min(base.probe_timeout_s, interval / 2),
            tcp_fallback_ping=False,
            stable=attrs.evolve(base.stable, **stable),
        )

    def plain_swim(self) -> Config:
        """The same timing with every Lifeguard extension (and the gossip timer) off."""
        return attrs.evolve(
            self,
            nacks=False,
            awareness=False,
            dynamic_suspicion=False,
            buddy_system=False,
            gossip_timer=False,
            tcp_fallback_ping=False,
        )

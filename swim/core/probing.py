"""Probing: SWIM's failure detector, one probe per (health-scaled) protocol period.

A protocol period, as the prober sees it (T scaled by local health):

    start            +probe_timeout                  +T*(score+1)
      | ping target ---> no ack? ping-req k helpers  | no ack at all? suspect target,
      |  (+ suspicion   (+ TCP fallback ping)         |  awareness += missing nacks
      |   if buddy)      helpers nack at 80 %         | ack? awareness -= 1

The prober also serves other members' ping-reqs: it pings the target with a sequence
number of its own, relays the ack to the requester, and sends a Lifeguard nack if the
target stays silent past `nack_delay_s`. It owns the local health score (awareness),
which probe outcomes and refutes move. A failed probe is reported to the caller, which
turns it into a suspicion through the membership table.
"""

from __future__ import annotations

from typing import Final

import attr

from swim.core.awareness import Awareness
from swim.core.codec import MAX_SEQ, encode_message
from swim.core.config import Config
from swim.core.deadlines import DeadlineHeap
from swim.core.dissemination import Dissemination
from swim.core.messages import Ack, Address, MemberState, MemberStatus, Nack, Ping, PingReq, Suspect
from swim.core.stats import Stats
from swim.core.timing import awareness_delta_for_failed_probe, nack_delay_s

_INF: Final = float("inf")
_SUSPECT: Final = MemberStatus.SUSPECT


@attr.s(auto_attribs=True, eq=False)
class Probe:
    """The probe of the current protocol period."""

    seq: int
    target: str
    addr: Address
    timeout_at: float
    end_at: float
    started_at: float = 0.0
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@attr.s(auto_attribs=True, eq=False)
class Relay:
    """A ping we send as a ping-req helper, on behalf of `requester`."""

    requester: Address
    requester_seq: int
    wants_nack: bool


def advance(at: float, interval: float, now: float) -> float:
    """The first time ``at + k * interval`` (k >= 1) after `now`."""
    at += interval
    if at <= now:
        at += interval * (int((now - at) / interval) + 1)
    return at


class Prober:
    """The probe cycle, the ping-req helper side and local health of one member."""

    def __init__(
        self, config: Config, stats: Stats, dissemination: Dissemination, *, name: str,
        first_seq: int, first_probe_at: float,
    ) -> None:
        self.config: Final = config
        self._stats = stats
        self._out = dissemination
        self._name = name
        self.awareness: Final = Awareness(config.awareness_max_multiplier)
        self._seq = first_seq
        self.next_probe_at = first_probe_at
        self.probe: Probe | None = None
        self._relays: dict[int, Relay] = {}
        #: Relay nack and expiry times, keyed by (relay seq, is expiry).
        self._relay_timers: DeadlineHeap[tuple[int, bool]] = DeadlineHeap()
        self.stopped = False

    # ----------------------------------------------------------------------- timers

    def _relay_live(self, when: float, key: tuple[int, bool]) -> bool:
        return key[0] in self._relays

    def deadline(self) -> float:
        """The prober's next deadline (inf: none)."""
        when = _INF if self.stopped else self.next_probe_at
        probe = self.probe
        if probe is not None:
            when = min(when, probe.end_at if probe.indirect_sent else probe.timeout_at)
        if self._relays:  # without relays every relay timer is stale
            relay_at = self._relay_timers.earliest(self._relay_live)
            if relay_at is not None and relay_at < when:
                when = relay_at
        return when

    def handle_timeouts(self, now: float, helpers: list[MemberState] | None) -> str | None:
        """Relay timers, then the current probe's timeouts.

        `helpers` are the members to ask for an indirect probe (drawn by the caller only
        when `needs_helpers` says so). Returns the name of a target whose probe failed.
        """
        for _, (seq, expiry) in self._relay_timers.pop_due(now, self._relay_live):
            relay = self._relays[seq]
            if expiry:
                del self._relays[seq]
            elif relay.wants_nack:
                self._out.send_one(relay.requester, Nack(relay.requester_seq))
        probe = self.probe
        if probe is None:
            return None
        if not probe.indirect_sent and now >= probe.timeout_at:
            self._probe_indirect(probe, helpers or [])
        if now >= probe.end_at:
            return self._probe_failed(probe)
        return None

    def needs_helpers(self, now: float) -> str | None:
        """The target of a probe whose indirect stage is due now (helpers needed), if any."""
        probe = self.probe
        if probe is not None and not probe.indirect_sent and now >= probe.timeout_at:
            return probe.target
        return None

    def due(self, now: float) -> bool:
        """True if a new probe period starts at `now`."""
        return not self.stopped and now >= self.next_probe_at

    def start_probe(self, now: float, target: MemberState | None) -> None:
        """Start this period's probe of `target` (None: nobody to probe)."""
        cfg = self.config
        interval = self.awareness.scale(cfg.probe_interval_s) if cfg.awareness else (
            cfg.probe_interval_s
        )
        self.next_probe_at = advance(self.next_probe_at, interval, now)
        if target is None:
            return
        seq = self.next_seq()
        self._stats.probes += 1
        timeout = cfg.probe_timeout_s
        if cfg.awareness and cfg.awareness_probe_timeout:
            # The paper's LHM: a member in poor health also waits longer for acks,
            # never past the end of its period.
            timeout = min(self.awareness.scale(timeout), 0.9 * (self.next_probe_at - now))
        # The probe ends when the next one starts, so no outcome is ever lost.
        self.probe = Probe(
            seq, target.name, target.addr, now + timeout, self.next_probe_at, started_at=now
        )
        ping = Ping(seq, target.name, self._name)
        if cfg.buddy_system and target.status == _SUSPECT:
            # Lifeguard buddy system: tell the suspect it is suspected, first thing.
            buddy = Suspect(target.name, target.incarnation, self._name)
            self._out.send(
                target.addr, [buddy, ping], [encode_message(buddy), encode_message(ping)]
            )
        else:
            self._out.send_one(target.addr, ping)

    def stop(self) -> None:
        """No more probes (we are leaving); ping-reqs are still served."""
        self.stopped = True
        self.probe = None

    # ----------------------------------------------------------------------- inputs

    def on_ack(self, seq: int, now: float) -> tuple[str, float] | None:
        """An ack: for our probe, or for a ping we sent as a helper (relay it).

        For our probe, returns (target, round-trip time) for the network coordinates.
        """
        probe = self.probe
        if probe is not None and probe.seq == seq:
            self._probe_acked()
            return probe.target, now - probe.started_at
        relay = self._relays.pop(seq, None)
        if relay is not None:
            self._out.send_one(relay.requester, Ack(relay.requester_seq))
            return None
        self._stats.unexpected += 1
        return None

    def on_fallback_ack(self, seq: int) -> None:
        """An ack over the TCP fallback ping."""
        probe = self.probe
        if probe is not None and probe.seq == seq:
            self._probe_acked()

    def on_nack(self, seq: int) -> None:
        """A helper's nack for our probe."""
        probe = self.probe
        if probe is not None and probe.seq == seq:
            probe.nacks += 1
            self._stats.nacks_received += 1
        else:
            self._stats.unexpected += 1

    def on_ping_req(self, req: PingReq, addr: Address, now: float) -> None:
        """Probe `req.target` for the member at `addr`."""
        seq = self.next_seq()
        self._relays[seq] = Relay(addr, req.seq, req.nack)
        cfg = self.config
        if req.nack:
            nack_at = now + nack_delay_s(cfg.probe_timeout_s, cfg.probe_interval_s)
            self._relay_timers.push(nack_at, (seq, False))
        self._relay_timers.push(now + cfg.probe_timeout_s, (seq, True))
        self._out.send_one(req.target_addr, Ping(seq, req.target, self._name))

    def refuted(self) -> None:
        """We had to refute a suspicion about ourselves: a point against our health."""
        if self.config.awareness:
            self._stats.awareness = self.awareness.apply_delta(1)

    def next_seq(self) -> int:
        """A fresh sequence number (32 bits, wrapping)."""
        self._seq = (self._seq + 1) & MAX_SEQ
        return self._seq

    # ---------------------------------------------------------------------- internals

    def _probe_indirect(self, probe: Probe, helpers: list[MemberState]) -> None:
        cfg = self.config
        probe.indirect_sent = True
        for helper in helpers:
            req = PingReq(probe.seq, probe.target, probe.addr, cfg.nacks, self._name)
            self._out.send_one(helper.addr, req)
        self._stats.ping_reqs_sent += len(helpers)
        probe.expected_nacks = len(helpers) if cfg.nacks else 0

    def _probe_acked(self) -> None:
        self.probe = None
        if self.config.awareness:
            self._stats.awareness = self.awareness.apply_delta(-1)

    def _probe_failed(self, probe: Probe) -> str:
        self.probe = None
        self._stats.probe_failures += 1
        if self.config.awareness:
            delta = awareness_delta_for_failed_probe(probe.expected_nacks, probe.nacks)
            self._stats.awareness = self.awareness.apply_delta(delta)
        return probe.target

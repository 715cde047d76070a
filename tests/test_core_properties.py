"""Property tests of the core: merge order, and random inputs that must never break it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swim.core import Config, Core, MemberStatus, ProtocolError
from swim.core.codec import MAX_SEQ, encode
from swim.core.messages import (
    Ack,
    Alive,
    Dead,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    Suspect,
    UserBroadcast,
    UserMessage,
)
from tests.drain import next_deadline, out_datagrams, out_events, out_streams
from tests.test_codec import VALID

ME = ("10.0.0.1", 7946)
PEERS = [f"peer-{i}" for i in range(1, 5)]


def peer_addr(name: str) -> tuple[str, int]:
    return (f"10.0.1.{name.rsplit('-', 1)[1]}", 7946)


LAN = Config.lan()


def fresh_core(config: Config = LAN, seed: int = 0) -> Core:
    core = Core(config, name="me", addr=ME, rng=random.Random(seed), now=0.0)
    core.receive_datagram(
        encode([Alive(MemberState(p, peer_addr(p), 0)) for p in PEERS]), ME, now=0.0
    )
    out_datagrams(core)
    out_events(core)
    return core


def table(core: Core) -> dict[str, tuple[MemberStatus, int, tuple[str, int], bytes]]:
    return {m.name: (m.status, m.incarnation, m.addr, m.meta) for m in core.members()}


# -------------------------------------------------------------------- merge order


@st.composite
def commuting_news(draw: st.DrawFn) -> list[Message]:
    """News about known members for which the precedence rules commute.

    Per member: Alive at *distinct* incarnations with unchanged address and metadata,
    plus optionally Suspect and/or Dead (by other accusers, never the member itself)
    all at *one* incarnation j. On this set the rules are a total order
    by (incarnation, Alive < Suspect < Dead), with Alive(i) beating an accusation at j
    only if i > j, so the final state is the maximum whatever the order.

    Outside it the rules are order dependent by design (as in memberlist): Suspect(2)
    after Suspect(1) only confirms (incarnation stays 1) while the reverse keeps 2; a
    Dead is final for its incarnation, so Dead(1) then Suspect(2) stays dead; Dead by
    the member itself (left) and by another at the same incarnation keep whichever came
    first; same-incarnation Alives with different metadata keep the first; a Suspect or
    Dead carries no metadata, so one that wins keeps whatever metadata was current
    (changed metadata in the Alives would make the result order dependent); and news
    before the member is known is ignored unless it is Alive.
    """
    news: list[Message] = []
    for name in draw(st.lists(st.sampled_from(PEERS), unique=True, min_size=1)):
        for inc in draw(st.lists(st.integers(1, 6), unique=True, max_size=4)):
            news.append(Alive(MemberState(name, peer_addr(name), inc)))
        j = draw(st.integers(0, 6))
        accusers = st.sampled_from(["me", *(p for p in PEERS if p != name), "zed"])
        if draw(st.booleans()):
            news.append(Suspect(name, j, draw(accusers)))
        if draw(st.booleans()):
            news.append(Dead(name, j, draw(accusers)))
    return news


@given(commuting_news(), st.randoms(use_true_random=False))
def test_merge_order_does_not_matter(news: list[Message], rnd: random.Random) -> None:
    reference = fresh_core()
    for msg in news:
        reference.receive_datagram(encode([msg]), ("10.0.9.9", 1), now=1.0)
    shuffled = list(news)
    rnd.shuffle(shuffled)
    other = fresh_core()
    for msg in shuffled:
        other.receive_datagram(encode([msg]), ("10.0.9.9", 1), now=1.0)
    assert table(other) == table(reference)
    # One datagram carrying everything, reversed, agrees too.
    third = fresh_core()
    third.receive_datagram(encode(list(reversed(news))), ("10.0.9.9", 1), now=1.0)
    assert table(third) == table(reference)


def test_merge_order_matters_outside_that_set() -> None:
    # Documented exception: a second suspicion at a higher incarnation only confirms.
    a, b = fresh_core(), fresh_core()
    for core, order in ((a, (1, 2)), (b, (2, 1))):
        for inc in order:
            core.receive_datagram(encode([Suspect("peer-1", inc, "zed")]), ("10.0.9.9", 1), now=1.0)
    assert a.member("peer-1").incarnation == 1  # type: ignore[union-attr]
    assert b.member("peer-1").incarnation == 2  # type: ignore[union-attr]


# ------------------------------------------------------------- random input stress

names = st.sampled_from(["me", *PEERS, "peer-9", "stranger"])
addrs = st.sampled_from([ME, peer_addr("peer-1"), peer_addr("peer-2"), ("10.0.3.3", 7946)])
incs = st.integers(0, 8) | st.sampled_from([2**20, 2**20 + 1, 2**62, 2**63 - 1])
seqs = st.integers(0, MAX_SEQ) | st.integers(0, 50)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, seqs, names),
    st.builds(PingReq, seqs, names, addrs, st.booleans()),
    st.builds(Ack, seqs),
    st.builds(Nack, seqs),
    st.builds(Alive, st.builds(MemberState, names, addrs, incs, meta=st.binary(max_size=4))),
    st.builds(Suspect, names, incs, names),
    st.builds(Dead, names, incs, names),
    st.builds(UserBroadcast, names, st.integers(0, 5), st.binary(max_size=8)),
    st.builds(UserMessage, names, st.binary(max_size=8)),
)


@dataclass
class Step:
    kind: str
    dt: float
    payload: object = None


steps = st.one_of(
    st.builds(Step, st.just("messages"), st.floats(0, 2), st.lists(messages, max_size=4)),
    st.builds(Step, st.just("bytes"), st.floats(0, 2), st.binary(max_size=64)),
    st.builds(Step, st.just("mutated"), st.floats(0, 2),
              st.tuples(st.sampled_from(VALID), st.integers(0, 500), st.integers(0, 255))),
    st.builds(Step, st.just("timer"), st.floats(0, 40)),
    st.builds(Step, st.just("timer_early"), st.floats(0, 1)),
    st.builds(Step, st.just("api"), st.floats(0, 1),
              st.sampled_from(["broadcast", "meta", "message", "stream_message", "join",
                               "leave"])),
    st.builds(Step, st.just("stream_reply"), st.floats(0, 1),
              st.sampled_from(["none", "garbage", "ack", "empty"])),
    st.builds(Step, st.just("stream_request"), st.floats(0, 1), st.lists(messages, max_size=2)),
)

configs = st.sampled_from([
    Config.lan(), Config.lan().plain_swim(), Config.local(), Config.wan(),
])


@settings(max_examples=1000)
@given(configs, st.integers(0, 2**32), st.lists(steps, max_size=60))
def test_random_inputs_never_crash_or_break_invariants(
    config: Config, seed: int, script: list[Step]
) -> None:
    core = fresh_core(config, seed)
    now = 0.0
    left = False
    pending: list[int] = []
    seen_inc: dict[str, int] = {m.name: m.incarnation for m in core.members()}
    for step in script:
        now += step.dt
        src = peer_addr("peer-2")
        match step.kind:
            case "messages":
                core.receive_datagram(encode(step.payload), src, now=now)  # type: ignore[arg-type]
            case "bytes":
                core.receive_datagram(step.payload, src, now=now)  # type: ignore[arg-type]
            case "mutated":
                base, pos, value = cast(tuple[bytes, int, int], step.payload)
                data = bytearray(base)
                data[pos % len(data)] = value
                core.receive_datagram(bytes(data), src, now=now)
            case "timer":
                # Jump to the core's next deadline (step.dt already added as slack).
                now = max(now, min(next_deadline(core), now + 30.0))
                core.handle_timer(now=now)
                assert next_deadline(core) > now
            case "timer_early":
                core.handle_timer(now=now)  # nothing need be due: must be harmless
                assert next_deadline(core) > now
            case "api":
                try:
                    match step.payload:
                        case "broadcast":
                            core.broadcast(b"b", now=now)
                        case "meta":
                            core.update_metadata(b"m%d" % int(now), now=now)
                        case "message":
                            core.send_user_message(src, b"hi", now=now)
                        case "stream_message":
                            core.send_user_message(src, b"hi", now=now, reliable=True)
                        case "join":
                            core.join([src], now=now)
                        case "leave":
                            core.leave(now=now)
                            left = True
                except ProtocolError:
                    assert step.payload == "meta" and left
            case "stream_reply":
                if pending:
                    sid = pending.pop(0)
                    reply = {
                        "none": None, "garbage": b"\xff\x00", "ack": encode([Ack(1)]),
                        "empty": encode([]),
                    }[step.payload]  # type: ignore[index]
                    core.receive_stream_response(sid, reply, now=now)
            case "stream_request":
                core.handle_stream_request(encode(step.payload), src, now=now)  # type: ignore[arg-type]
        pending.extend(r.id for r in out_streams(core))
        for d in out_datagrams(core):
            assert 0 < len(d.data) <= max(config.packet_budget, 64 * 1024 + 64)
        out_events(core)
        # Invariants.
        me = core.member("me")
        assert me is not None
        assert me.status in ((MemberStatus.LEFT,) if left else (MemberStatus.ALIVE,))
        for m in core.members():
            if m.name in seen_inc:
                assert m.incarnation >= seen_inc[m.name], (m, seen_inc[m.name])
        seen_inc = {m.name: m.incarnation for m in core.members()}
        assert set(core.membership.probe_order()) == {m.name for m in core.members()} - {"me"}
        assert core.membership.local.name == "me"
        assert 0 <= core.local_health < config.awareness_max_multiplier


@pytest.mark.parametrize("seed", range(3))
def test_time_never_goes_backwards_through_get_timer(seed: int) -> None:
    """Driving the core purely from get_timer() makes progress at every call."""
    core = fresh_core(seed=seed)
    now = 0.0
    for _ in range(2000):
        t = next_deadline(core)
        assert t > now or now == 0.0
        now = t
        core.handle_timer(now=now)
        out_datagrams(core)
        for r in out_streams(core):
            core.receive_stream_response(r.id, None, now=now)
    assert now > 60.0

"""User broadcasts repaired by push-pull: gossip is best-effort, the exchange is not."""

from __future__ import annotations

import random

import attrs
import cbor2
import pytest

from swim.core import Config, Core, MalformedMessage, UserBroadcastReceived
from swim.core.codec import decode_untrusted, encode
from swim.core.messages import MemberState, PushPull, UserBroadcast
from tests.drain import out_datagrams, out_streams
from tests.router import Router, addr_of

LAN = Config.lan()


def received(router: Router, name: str) -> list[bytes]:
    return [e.payload for e in router.events[name] if isinstance(e, UserBroadcastReceived)]


def test_push_pull_round_trips_its_broadcasts() -> None:
    msg = PushPull(
        False,
        (MemberState("a", ("10.0.0.1", 7946), 3),),
        (UserBroadcast("a", 1, b"x"), UserBroadcast("b", 2**40, b"")),
    )
    assert decode_untrusted(encode([msg]), stream=True) == (msg,)
    # Without broadcasts the field is left out: the frame is as small as before.
    bare = PushPull(False, msg.members)
    assert len(encode([bare])) == len(encode([msg])) - len(encode([*msg.broadcasts])) + 1


@pytest.mark.parametrize(
    "replay",
    [[[2, 1]], [[7, "a", 1]], "nope", [[7, "a", -1, b""]], [[7, "a", 1, b""]] * 300],
    ids=["an-ack", "short", "not-a-list", "negative-id", "too-many"],
)
def test_push_pull_with_bad_broadcasts_is_malformed(replay: object) -> None:
    frame = cbor2.dumps([1, [9, False, [], replay]])
    with pytest.raises(MalformedMessage):
        decode_untrusted(frame, stream=True)


def test_a_broadcast_missed_by_gossip_arrives_by_push_pull() -> None:
    router = Router(seed=11)
    cores = router.cluster(6, LAN)
    router.run_until_true(lambda: router.converged([c.name for c in cores]), limit_s=30.0)
    deaf = cores[5]
    # Every datagram carrying a user broadcast to `deaf` is lost; streams still work.
    router.drop = lambda src, dst, msgs: dst == deaf.addr and any(
        isinstance(m, UserBroadcast) for m in msgs
    )
    router.drop_stream = lambda src, dst, msgs: False
    cores[0].broadcast(b"news", now=router.now)
    router.run_until(router.now + 5.0)
    assert all(received(router, c.name) == [b"news"] for c in cores[:5])
    assert received(router, deaf.name) == []
    # A push-pull in either direction carries it (30 s base interval, staggered).
    router.run_until_true(lambda: received(router, deaf.name) == [b"news"], limit_s=65.0)
    router.run_until(router.now + 65.0)
    assert received(router, deaf.name) == [b"news"]  # and exactly once


def test_a_joiner_takes_recent_broadcasts_as_seen_not_delivered() -> None:
    router = Router(seed=12)
    cores = router.cluster(4, LAN)
    router.run_until(10.0)
    cores[1].broadcast(b"old", now=router.now)
    router.run_until(router.now + 5.0)
    joiner = router.add("late", addr_of(9), LAN)
    joiner.join([cores[0].addr], now=router.now)
    router.run_until(router.now + 90.0)  # several push-pulls carrying "old"
    assert received(router, "late") == []
    cores[2].broadcast(b"new", now=router.now)
    router.run_until(router.now + 5.0)
    assert received(router, "late") == [b"new"]


def test_replay_can_be_disabled() -> None:
    config = attrs.evolve(LAN, user_broadcast_replay=0)
    core = Core(config, name="a", addr=addr_of(0), rng=random.Random(1), now=0.0)
    core.broadcast(b"x", now=0.0)
    core.join([addr_of(1)], now=0.0)
    (request,) = out_streams(core)
    (state,) = request.messages
    assert isinstance(state, PushPull) and state.broadcasts == ()


@pytest.mark.parametrize("profile", ["lan", "local"])
def test_user_broadcasts_get_their_own_retransmit_budget(profile: str) -> None:
    from swim.core.timing import retransmit_limit

    config = Config.profile(profile)
    core = Core(config, name="a", addr=addr_of(0), rng=random.Random(2), now=0.0)
    core.bootstrap([MemberState(f"m{i}", addr_of(i + 1), 0) for i in range(9)], now=0.0)
    while core.news_pending():  # let its own Alive be sent its full count first
        core.send_user_message(addr_of(1), b"", now=0.0)
    out_datagrams(core)
    core.broadcast(b"hello", now=0.0)
    sent = 0
    for i in range(100):
        core.send_user_message(addr_of(1), b"", now=float(i))
        (datagram,) = out_datagrams(core)
        sent += sum(isinstance(m, UserBroadcast) for m in datagram.messages)
    assert sent == retransmit_limit(config.user_retransmit_mult, 10)
    assert sent == 2 * retransmit_limit(config.retransmit_mult, 10)

"""`swim.Node` with the sealing layer, as an attacker and an operator meet it: members on
the in-memory network under trio's MockClock (autojump) and on real loopback UDP + TCP.

Every member's transport is wrapped in a `Tap` that records what it puts on the wire, so
tests can look at real packets and replay captured ones. Forgeries are built with the
codec and sent from a rogue endpoint on the same network. Each test waits for an outcome
with a bound, then asserts the outcome (events, member tables, counters by reason).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence

import attrs
import pytest
import trio
import trio.testing

from swim import (
    Config,
    Event,
    JoinCompleted,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberStatus,
    MemberSuspected,
    Node,
    ProtocolError,
)
from swim.core import codec
from swim.core.messages import (
    Alive,
    Dead,
    MemberState,
    Message,
    PingReq,
    PushPull,
    Suspect,
    UserBroadcast,
)
from swim.runtime import TransportFactory
from swim.security import (
    PLAINTEXT_V1,
    SEALED_OVERHEAD,
    SEALED_V1,
    Keyring,
    Reason,
    Sealer,
    SecurityConfig,
)
from transport.base import Address, StreamHandler, Transport, TransportError
from transport.memory import MemoryNetwork
from transport.udp import open_udp_tcp_transport

K1 = bytes(range(32))
K2 = bytes(range(32, 64))
LABEL = "prod"
#: Long names, so that finding one in a sealed packet by chance is out of the question.
NAMES = ["alpha-member", "bravo-member", "charlie-member", "delta-member", "echo-member"]
KINDS = ["memory", "udp"]


# ====================================================================== the harness


class Tap(Transport):
    """A transport that records what goes out (datagrams and stream requests) and can
    damage the stream responses coming back (a man in the middle)."""

    def __init__(self, inner: Transport, wire: Wire) -> None:
        self._inner = inner
        self._wire = wire
        self.stats = inner.stats

    @property
    def local_addr(self) -> Address:
        return self._inner.local_addr

    async def send(self, data: bytes, addr: Address) -> bool:
        self._wire.datagrams.append((data, addr))
        return await self._inner.send(data, addr)

    def receive(self) -> AsyncIterator[tuple[bytes, Address]]:
        return self._inner.receive()

    async def request(self, addr: Address, data: bytes, *, timeout_s: float) -> bytes:
        self._wire.frames.append((data, addr))
        response = await self._inner.request(addr, data, timeout_s=timeout_s)
        if self._wire.damage_responses:
            response = flip(response, [len(response) // 2 * 8])
        return response


@attrs.define(eq=False)
class Wire:
    """What one member put on the wire."""

    datagrams: list[tuple[bytes, Address]] = attrs.Factory(list)
    frames: list[tuple[bytes, Address]] = attrs.Factory(list)
    damage_responses: bool = False

    def to(self, addr: Address) -> list[bytes]:
        return [data for data, dst in self.datagrams if dst == addr]


@attrs.define(eq=False)
class Member:
    name: str
    node: Node
    wire: Wire
    scope: trio.CancelScope
    events: list[Event] = attrs.Factory(list)
    stop_requested: trio.Event = attrs.Factory(trio.Event)
    stopped: trio.Event = attrs.Factory(trio.Event)

    @property
    def addr(self) -> Address:
        return self.node.addr

    def table(self) -> set[tuple[str, MemberStatus, int, bytes]]:
        return {(m.name, m.status, m.incarnation, m.meta) for m in self.node.members()}

    def rejected(self, reason: Reason) -> int:
        return self.node.stats().security.count(reason)

    async def stop(self) -> None:
        """A graceful exit: leave, then close."""
        self.stop_requested.set()
        await self.stopped.wait()


class Cluster:
    """Members on one network kind, each a task of one nursery, events recorded."""

    def __init__(
        self,
        kind: str,
        nursery: trio.Nursery,
        *,
        config: Config | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.kind = kind
        self.nursery = nursery
        self.config = config or Config.local()
        self.wall_clock = wall_clock
        self.network = MemoryNetwork(latency_s=0.001, rng=random.Random(5))
        self.members: dict[str, Member] = {}
        self.addrs: dict[str, Address] = {}
        #: Bound on every wait: virtual seconds under MockClock, real ones over UDP.
        self.bound_s = 120.0 if kind == "memory" else 30.0
        self._count = 0

    def _factory(self, addr: Address, wire: Wire) -> TransportFactory:
        @contextlib.asynccontextmanager
        async def factory(handler: StreamHandler) -> AsyncIterator[Transport]:
            opened: contextlib.AbstractAsyncContextManager[Transport] = (
                self.network.open(addr, handler)
                if self.kind == "memory"
                else open_udp_tcp_transport(addr, handler, stream_timeout_s=2.0)
            )
            async with opened as inner:
                yield Tap(inner, wire)

        return factory

    def _address(self, name: str) -> Address:
        if name not in self.addrs:
            self._count += 1
            self.addrs[name] = (
                ("127.0.0.1", 0) if self.kind == "udp" else (f"10.0.0.{self._count}", 7946)
            )
        return self.addrs[name]

    async def start(
        self,
        name: str,
        security: SecurityConfig | Sealer | None = None,
        *,
        seeds: Sequence[Address] | None = None,
        wire: Wire | None = None,
    ) -> Member:
        addr = self._address(name)
        if seeds is None:
            seeds = [m.addr for m in self.live()][:1]
        member: Member = await self.nursery.start(
            self._run, name, addr, security, list(seeds), wire or Wire()
        )
        self.members[name] = member
        self.addrs[name] = member.addr  # the real port, for a restart
        return member

    async def _run(
        self,
        name: str,
        addr: Address,
        security: SecurityConfig | Sealer | None,
        seeds: list[Address],
        wire: Wire,
        *,
        task_status: trio.TaskStatus[Member],
    ) -> None:
        node = Node(
            self.config,
            name=name,
            bind=addr,
            seeds=seeds,
            seed=sum(name.encode()),
            transport_factory=self._factory(addr, wire),
            join_backoff_s=0.2,
            join_backoff_max_s=2.0,
            security=security,
            wall_clock=self.wall_clock,
        )
        member: Member | None = None
        with trio.CancelScope() as scope:
            async with node:
                member = Member(name, node, wire, scope)
                subscription = node.events(max_buffer=100_000)
                async with trio.open_nursery() as inner:
                    inner.start_soon(_record, subscription, member.events)
                    task_status.started(member)
                    await member.stop_requested.wait()
                    inner.cancel_scope.cancel()
        if member is not None:
            member.stopped.set()

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if not m.stopped.is_set()]

    async def converged(
        self, names: Iterable[str], *, among: Iterable[Member] | None = None
    ) -> None:
        """Wait until every member of `among` (default: all live) sees exactly `names`
        alive."""
        want = set(names)
        observers = list(among) if among is not None else self.live()
        await eventually(lambda: all(alive(m) == want for m in observers), self.bound_s)


def alive(member: Member) -> set[str]:
    return {m.name for m in member.node.members() if m.status == MemberStatus.ALIVE}


async def _record(subscription: AsyncIterator[Event], into: list[Event]) -> None:
    async for event in subscription:
        into.append(event)


async def eventually(predicate: Callable[[], bool], bound_s: float) -> None:
    with trio.fail_after(bound_s):
        while not predicate():
            await trio.sleep(0.05)


@contextlib.asynccontextmanager
async def cluster_of(kind: str, **kwargs: object) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        yield Cluster(kind, nursery, **kwargs)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock | None:
    """The autojump clock for the in-memory network, the real one for UDP."""
    return trio.testing.MockClock(autojump_threshold=0) if kind == "memory" else None


@contextlib.asynccontextmanager
async def rogue_on(cluster: Cluster) -> AsyncIterator[Transport]:
    """An endpoint on the cluster's network that is no member: the attacker."""

    async def no_streams(data: bytes, src: Address) -> bytes | None:
        return None

    opened: contextlib.AbstractAsyncContextManager[Transport] = (
        cluster.network.open(("10.0.0.66", 7946), no_streams)
        if cluster.kind == "memory"
        else open_udp_tcp_transport(("127.0.0.1", 0), no_streams)
    )
    async with opened as transport:
        yield transport


def sealed(label: str = LABEL, key: bytes = K1, **options: object) -> SecurityConfig:
    return SecurityConfig(keyring=Keyring(key), label=label, **options)  # type: ignore[arg-type]


def attacker(security: SecurityConfig) -> Sealer:
    return security.sealer(sender_id=b"attacker", random_bytes=random.Random(66).randbytes)


def flip(data: bytes, bits: Iterable[int]) -> bytes:
    out = bytearray(data)
    for bit in bits:
        out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


async def settle(cluster: Cluster) -> None:
    """Let a few probe and gossip rounds pass."""
    await trio.sleep(10 * cluster.config.probe_interval_s if cluster.kind == "memory" else 2.5)


def forgeries(victim: MemberState, accuser: str) -> list[list[Message]]:
    """Datagrams a stranger would send to rewrite a member's view (one list each)."""
    phantom = MemberState("phantom-member", ("10.0.0.99", 7946), 0)
    return [
        [Alive(phantom)],
        [Suspect(victim.name, victim.incarnation, accuser)],
        [Dead(victim.name, victim.incarnation + 5, accuser)],
        [Dead(victim.name, victim.incarnation + (1 << 20), accuser)],
        [Alive(attrs.evolve(victim, incarnation=victim.incarnation + 1, meta=b"forged tags"))],
        [UserBroadcast(accuser, 999_999, b"forged broadcast")],
        [PingReq(7, "phantom-member", ("10.0.0.98", 7946), True, accuser)],
    ]


def forged_push_pull(victim: MemberState) -> PushPull:
    phantoms = tuple(
        MemberState(f"phantom-{i}", (f"10.1.{i // 250}.{i % 250}", 7946), 0) for i in range(500)
    )
    dead = attrs.evolve(victim, incarnation=victim.incarnation + 9, status=MemberStatus.DEAD)
    return PushPull(join=True, members=(*phantoms, dead))


async def attack(
    rogue: Transport, sealer: Sealer, target: Member, victim: Member, accuser: str
) -> int:
    """Send every forgery (datagrams and push-pull frames) to `target`; how many packets."""
    state = target.node.member(victim.name)
    assert state is not None
    sent = 0
    for messages in forgeries(state, accuser):
        assert await rogue.send(sealer.seal(codec.encode(messages), now=time.time()), target.addr)
        sent += 1
    for join in (True, False):
        frame = codec.encode([attrs.evolve(forged_push_pull(state), join=join)])
        with pytest.raises(TransportError):
            await rogue.request(target.addr, sealer.seal(frame, now=time.time()), timeout_s=5.0)
        sent += 1
    return sent


# ========================================================================= scenarios


async def test_an_encrypted_cluster_converges_seals_everything_and_detects_a_crash(
    kind: str, clock: object
) -> None:
    async with cluster_of(kind) as cluster:
        members = [await cluster.start(name, sealed()) for name in NAMES[:3]]
        await cluster.converged(NAMES[:3])
        await settle(cluster)  # push-pull and probes have run too

        for member in members:
            assert member.node.encrypted and member.node.label == LABEL
            wire = member.wire.datagrams + member.wire.frames
            assert wire and {data[0] for data, _ in wire} == {SEALED_V1}
            # Nothing readable: no member's name appears in any packet or frame.
            assert not [name for data, _ in wire for name in NAMES if name.encode() in data]
            stats = member.node.stats().security
            assert stats.sealed > 0 and stats.sent_plaintext == 0
            assert stats.opened > 0 and stats.opened_plaintext == 0
            assert stats.rejected == 0
            assert not [e for e in member.events if isinstance(e, MemberSuspected)]

        crashed = members[2]
        crashed.scope.cancel()
        survivors = members[:2]
        await eventually(
            lambda: all(
                any(isinstance(e, MemberFailed) and e.member.name == crashed.name
                    for e in m.events)
                for m in survivors
            ),
            cluster.bound_s,
        )
        await cluster.converged(NAMES[:2], among=survivors)


ATTACKERS = {
    # A stranger with no key at all, who knows the label.
    "plaintext": (SecurityConfig(label=LABEL), Reason.PLAINTEXT_REFUSED),
    # Someone holding another cluster's key.
    "other-key": (sealed(key=K2), Reason.UNAUTHENTICATED),
    # The right key, another cluster's label (packets moved between clusters).
    "other-label": (sealed(label="staging"), Reason.WRONG_LABEL),
}


@pytest.mark.parametrize(
    ("kind", "who"),
    [("memory", who) for who in ATTACKERS] + [("udp", "plaintext"), ("udp", "other-key")],
)
async def test_forgeries_from_outside_the_cluster_change_nothing(
    kind: str, who: str, clock: object
) -> None:
    security, reason = ATTACKERS[who]
    async with cluster_of(kind) as cluster:
        members = [await cluster.start(name, sealed()) for name in NAMES[:3]]
        await cluster.converged(NAMES[:3])
        await settle(cluster)
        target, victim, accuser = members
        tables = [m.table() for m in members]
        events = [len(m.events) for m in members]
        before = target.rejected(reason)

        async with rogue_on(cluster) as rogue:
            sent = await attack(rogue, attacker(security), target, victim, accuser.name)
            await settle(cluster)
            assert rogue.stats.datagrams_received == 0  # nobody answered the stranger

        assert target.rejected(reason) - before == sent
        assert [m.table() for m in members] == tables
        assert [m.events[n:] for m, n in zip(members, events, strict=True)] == [[], [], []]
        # The ping-req was not obeyed: nothing went to the address it named.
        assert not target.wire.to(("10.0.0.98", 7946))


async def test_the_same_forgeries_sealed_with_the_cluster_key_do_take_effect(
    autojump_clock: object,
) -> None:
    """The control for the test above: an insider's forgeries are accepted, so the
    outsiders' were refused by the sealer, not ignored for some other reason."""
    async with cluster_of("memory") as cluster:
        members = [await cluster.start(name, sealed()) for name in NAMES[:3]]
        await cluster.converged(NAMES[:3])
        target, victim, accuser = members
        async with rogue_on(cluster) as rogue:
            insider = attacker(sealed())
            state = target.node.member(victim.name)
            assert state is not None
            phantom = forgeries(state, accuser.name)[0]
            await rogue.send(insider.seal(codec.encode(phantom), now=time.time()), target.addr)
            await eventually(lambda: target.node.member("phantom-member") is not None, 10.0)
        assert target.node.stats().security.rejected == 0


async def test_a_captured_packet_replayed_is_refused_and_later_is_stale(
    autojump_clock: object,
) -> None:
    window_s = 30.0
    security = sealed(replay_window_s=window_s)
    # One virtual wall clock shared by every node, so the window can be crossed quickly.
    async with cluster_of("memory", wall_clock=trio.current_time) as cluster:
        a = await cluster.start(NAMES[0], security)
        await trio.sleep(0.5)
        b = await cluster.start(NAMES[1], security)
        await cluster.converged(NAMES[:2])
        await trio.sleep(1.0)  # everything captured so far has been delivered
        datagram = a.wire.to(b.addr)[-1]
        frame = b.wire.frames[0][0]  # b's join request to a
        tables, events = [a.table(), b.table()], [len(a.events), len(b.events)]
        replayed, stale = b.rejected(Reason.REPLAYED), b.rejected(Reason.STALE)
        replayed_a = a.rejected(Reason.REPLAYED)

        async with rogue_on(cluster) as rogue:
            await rogue.send(datagram, b.addr)
            await rogue.send(frame, a.addr)  # a frame replayed as a datagram
            with pytest.raises(TransportError):  # and as a stream again
                await rogue.request(a.addr, frame, timeout_s=5.0)
            await trio.sleep(0.1)
            assert b.rejected(Reason.REPLAYED) == replayed + 1
            assert a.rejected(Reason.REPLAYED) == replayed_a + 2

            await trio.sleep(window_s + 1.0)
            await rogue.send(datagram, b.addr)
            await trio.sleep(0.1)
            assert b.rejected(Reason.STALE) == stale + 1
            assert b.rejected(Reason.REPLAYED) == replayed + 1

        await cluster.converged(NAMES[:2])
        assert [a.table(), b.table()] == tables
        new_events = [a.events[events[0]:], b.events[events[1]:]]
        assert new_events == [[], []]


async def test_bit_flipped_datagrams_are_dropped_as_corrupt_in_plaintext_mode(
    autojump_clock: object,
) -> None:
    async with cluster_of("memory") as cluster:
        a = await cluster.start(NAMES[0])  # the default: plaintext, CRC, empty label
        b = await cluster.start(NAMES[1])
        await cluster.converged(NAMES[:2])
        await settle(cluster)
        captures = a.wire.to(b.addr)
        assert captures and {d[0] for d in captures} == {PLAINTEXT_V1}
        assert a.node.stats().security.sent_plaintext > 0 and not a.node.encrypted

        rng = random.Random(8)
        damaged = []
        for _ in range(3000):
            data = rng.choice(captures)
            bits = rng.sample(range(len(data) * 8), rng.randint(1, 3))
            damaged.append(flip(data, bits))
        format_intact = sum(d[0] == PLAINTEXT_V1 for d in damaged)
        before = b.node.stats()
        table, events = b.table(), len(b.events)

        async with rogue_on(cluster) as rogue:
            for data in damaged:
                assert await rogue.send(data, b.addr)
                await trio.sleep(0.001)  # within the receive queue's bound
        await settle(cluster)

        after = b.node.stats()
        assert after.security.rejected - before.security.rejected == len(damaged)
        assert after.security.corrupt - before.security.corrupt == format_intact
        assert after.core.malformed == before.core.malformed  # never reached the codec
        assert b.table() == table and b.events[events:] == []


async def test_clusters_with_different_labels_on_one_network_stay_apart(
    autojump_clock: object,
) -> None:
    blue, green = SecurityConfig(label="blue"), SecurityConfig(label="green")
    async with cluster_of("memory") as cluster:
        b1 = await cluster.start("blue-1", blue, seeds=[])
        g1 = await cluster.start("green-1", green, seeds=[])
        b2 = await cluster.start("blue-2", blue, seeds=[b1.addr])
        g2 = await cluster.start("green-2", green, seeds=[g1.addr])
        # A green member that is (wrongly) pointed at a blue seed first, and a blue one
        # given seeds of both clusters.
        g3 = await cluster.start("green-3", green, seeds=[b1.addr])
        b3 = await cluster.start("blue-3", blue, seeds=[g1.addr, b1.addr])
        await cluster.converged({"blue-1", "blue-2", "blue-3"}, among=[b1, b2, b3])
        await cluster.converged({"green-1", "green-2"}, among=[g1, g2])
        await trio.sleep(3 * cluster.config.push_pull_interval_s)

        assert [alive(m) for m in (b1, b2, b3)] == [{"blue-1", "blue-2", "blue-3"}] * 3
        assert [alive(m) for m in (g1, g2)] == [{"green-1", "green-2"}] * 2
        assert alive(g3) == {"green-3"}
        assert [e.ok for e in g3.events if isinstance(e, JoinCompleted)][:2] == [False, False]
        assert b1.rejected(Reason.WRONG_LABEL) > 0  # g3's join attempts
        assert g1.rejected(Reason.WRONG_LABEL) > 0  # b3's first seed
        for member in cluster.live():
            assert {e.member.name[:4] for e in member.events if isinstance(e, MemberJoined)} <= {
                member.name[:4]
            }


async def test_rolling_upgrade_from_plaintext_to_sealed_without_a_false_failure(
    autojump_clock: object,
) -> None:
    """Plaintext cluster -> every member restarted with keys, accepting and sending
    plaintext -> sending sealed -> refusing plaintext, one member at a time, with a few
    probe rounds between steps. No member is ever suspected or declared failed, and no
    legitimate packet is refused at any step."""
    ring = Keyring(K1)
    names = NAMES
    async with cluster_of("memory") as cluster:
        for name in names:
            await cluster.start(name)
        await cluster.converged(names)
        history: list[Event] = []

        def record_all() -> None:
            for member in cluster.members.values():
                history.extend(member.events)
                member.events.clear()

        upgrading = SecurityConfig(keyring=ring, accept_plaintext=True, send_plaintext=True)
        for name in names:  # step 1: a rolling restart with keys and both switches on
            old = cluster.members[name]
            record_all()
            await old.stop()
            seeds = [m.addr for m in cluster.live()][:1]
            await cluster.start(name, upgrading, seeds=seeds)
            await cluster.converged(names)
            await settle(cluster)
        assert all(m.node.encrypted for m in cluster.live())

        for name in names:  # step 2: seal what is sent
            cluster.members[name].node.update_security(send_plaintext=False)
            await settle(cluster)
            await cluster.converged(names)
        plaintext_sent = {m.name: m.node.stats().security.sent_plaintext for m in cluster.live()}

        for name in names:  # step 3: refuse plaintext
            cluster.members[name].node.update_security(accept_plaintext=False)
            await settle(cluster)
            await cluster.converged(names)
        await trio.sleep(2 * cluster.config.push_pull_interval_s)
        await cluster.converged(names)
        record_all()

        assert not [e for e in history if isinstance(e, MemberFailed | MemberSuspected)]
        # Every member was really restarted: the others saw it leave and come back.
        assert {e.member.name for e in history if isinstance(e, MemberLeft)} == set(names)
        for member in cluster.live():
            stats = member.node.stats().security
            assert stats.rejected == 0, (member.name, stats)
            # Nothing plaintext went out after step 2.
            assert stats.sent_plaintext == plaintext_sent[member.name]
            assert stats.sealed > stats.sent_plaintext

        # Strict now: a keyless stranger is refused.
        target = cluster.members[names[0]]
        async with rogue_on(cluster) as rogue:
            victim = cluster.members[names[1]]
            sent = await attack(
                rogue, attacker(SecurityConfig()), target, victim, names[2]
            )
        assert target.rejected(Reason.PLAINTEXT_REFUSED) == sent


async def test_refusing_plaintext_before_every_member_seals_is_seen_at_once(
    autojump_clock: object,
) -> None:
    """The control for the upgrade test: steps out of order refuse real traffic, and the
    counters say so (the operator's signal to go back)."""
    upgrading = SecurityConfig(keyring=Keyring(K1), accept_plaintext=True, send_plaintext=True)
    async with cluster_of("memory") as cluster:
        members = [await cluster.start(name, upgrading) for name in NAMES[:3]]
        await cluster.converged(NAMES[:3])
        early = members[0]
        early.node.update_security(accept_plaintext=False)  # the others still send plaintext
        await eventually(lambda: early.rejected(Reason.PLAINTEXT_REFUSED) > 0, cluster.bound_s)
        early.node.update_security(accept_plaintext=True)  # back out
        await settle(cluster)
        await cluster.converged(NAMES[:3])


async def test_a_rejected_stream_response_is_a_failed_stream(autojump_clock: object) -> None:
    async with cluster_of("memory") as cluster:
        seed = await cluster.start(NAMES[0], sealed())
        # A man in the middle flips one bit of every stream response the joiner gets.
        joiner = await cluster.start(
            NAMES[1], sealed(), seeds=[seed.addr], wire=Wire(damage_responses=True)
        )
        await eventually(
            lambda: any(isinstance(e, JoinCompleted) for e in joiner.events), cluster.bound_s
        )
        assert next(e.ok for e in joiner.events if isinstance(e, JoinCompleted)) is False
        stats = joiner.node.stats()
        assert stats.streams_failed >= 1
        assert stats.security.unauthenticated >= 1


async def test_a_stream_from_another_cluster_is_closed_unanswered(autojump_clock: object) -> None:
    async with cluster_of("memory") as cluster:
        seed = await cluster.start(NAMES[0], sealed())
        stranger = await cluster.start(NAMES[1], sealed(key=K2), seeds=[seed.addr])
        await eventually(
            lambda: any(isinstance(e, JoinCompleted) for e in stranger.events), cluster.bound_s
        )
        assert next(e.ok for e in stranger.events if isinstance(e, JoinCompleted)) is False
        assert stranger.node.stats().streams_failed >= 1
        assert seed.rejected(Reason.UNAUTHENTICATED) >= 1
        assert alive(seed) == {NAMES[0]}


# ===================================================================== configuration


async def test_sealed_datagrams_stay_within_the_packet_budget_on_the_wire(
    autojump_clock: object,
) -> None:
    label = "x" * 200
    config = Config.local()
    async with cluster_of("memory", config=config) as cluster:
        a = await cluster.start(NAMES[0], sealed(label=label))
        b = await cluster.start(NAMES[1], sealed(label=label))
        await cluster.converged(NAMES[:2])
        overhead = SEALED_OVERHEAD + len(label)
        assert a.node.core.config.packet_budget == config.packet_budget - overhead
        assert a.node.config.packet_budget == config.packet_budget
        room = config.packet_budget - overhead - codec.DATAGRAM_OVERHEAD - 64
        with pytest.raises(ProtocolError):  # too big for one datagram after sealing
            a.node.broadcast(b"p" * (config.packet_budget - overhead))
        for i in range(20):
            a.node.broadcast(bytes([i]) * room)
        await settle(cluster)
        sizes = [len(data) for data, _ in a.wire.datagrams]
        assert max(sizes) <= config.packet_budget
        assert max(sizes) > config.packet_budget - 100  # the budget was used, not wasted
        assert b.node.stats().security.rejected == 0


def test_a_budget_with_no_room_after_the_overhead_is_refused() -> None:
    config = attrs.evolve(Config.local(), packet_budget=300)
    with pytest.raises(ValueError, match="overhead"):
        Node(config, name="n", bind=("127.0.0.1", 0), security=SecurityConfig(label="y" * 255))
    node = Node(config, name="n", bind=("127.0.0.1", 0), security=SecurityConfig(label="y" * 200))
    assert node.label == "y" * 200 and not node.encrypted


async def test_a_ready_sealer_is_used_as_it_is(autojump_clock: object) -> None:
    mine = Sealer(
        keyring=Keyring(K1), sender_id=b"sealer-1", random_bytes=random.Random(1).randbytes
    )
    async with cluster_of("memory") as cluster:
        a = await cluster.start(NAMES[0], mine)
        await cluster.start(NAMES[1], sealed(label=""))
        await cluster.converged(NAMES[:2])
        assert a.node.stats().security.sealed == mine.stats.sealed > 0
        assert a.node.encrypted and a.node.label == ""
        assert all(data[2:10] == b"sealer-1" for data, _ in a.wire.datagrams)


async def test_update_security_needs_a_running_node_with_keys(autojump_clock: object) -> None:
    node = Node(Config.local(), name="n", bind=("127.0.0.1", 0), security=sealed())
    with pytest.raises(RuntimeError):
        node.update_security(send_plaintext=True)
    async with cluster_of("memory") as cluster:
        plain = await cluster.start(NAMES[0])
        with pytest.raises(ValueError, match="no keyring"):
            plain.node.update_security(accept_plaintext=True)
        upgrading = sealed(label="", accept_plaintext=True, send_plaintext=True)
        keyed = await cluster.start(NAMES[1], upgrading)
        await cluster.converged(NAMES[:2])
        assert plain.node.stats().security.rejected == 0
        # Sealing now: the keyless member cannot open what the other sends.
        keyed.node.update_security(send_plaintext=False)
        await eventually(
            lambda: plain.node.stats().security.unauthenticated > 0, cluster.bound_s
        )
        keyed.node.update_security(send_plaintext=True)
        await settle(cluster)
        await cluster.converged(NAMES[:2])

"""Queries and cluster-wide key commands through `swim.Node`: members on the in-memory
network under trio's MockClock (autojump), every member's events recorded from its start.

Each member runs an application task that reads its `Node.events()` and answers the
queries it is told to answer, as an embedding application would. Tests wait for an
outcome with a bound (virtual seconds) and assert the outcome: who received, who
answered, what each report says, what each keyring and keyring file holds.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import attrs
import pytest
import trio

from swim import (
    Config,
    Event,
    MemberFailed,
    MemberStatus,
    MemberSuspected,
    Node,
    ProtocolError,
    QueryAcked,
    QueryFinished,
    QueryReceived,
    QueryResponded,
    QueryResult,
    QueryResultKind,
    ThreadedNode,
)
from swim.core.tags import encode_tags
from swim.runtime.keyops import (
    KeyCommand,
    MalformedAnswer,
    MemberAnswer,
    answer_key_query,
    build_report,
    decode_answer_untrusted,
    encode_answer,
)
from swim.security import (
    Keyring,
    KeyringError,
    Sealer,
    SecurityConfig,
    encode_key,
    load_keyring,
    save_keyring,
)
from transport.base import Address
from transport.memory import MemoryNetwork

K1 = bytes(range(32))
K2 = bytes(range(32, 64))
K3 = bytes(range(64, 96))
NAMES = ["n1", "n2", "n3", "n4", "n5"]
BOUND_S = 120.0
LOCAL = Config.local()
#: Gossip alone, with the local profile's user-broadcast budget (4 transmits), misses
#: one of five members now and then; a query that must reach all of them by gossip
#: alone (no ``reask``) spends twice that.
GOSSIP_ONLY = attrs.evolve(LOCAL, user_retransmit_mult=8)
#: One transmit per query: gossip alone reaches only some members.
TINY_BUDGET = attrs.evolve(LOCAL, user_retransmit_mult=1)


# ====================================================================== the harness


@attrs.define(eq=False)
class Member:
    name: str
    node: Node
    scope: trio.CancelScope
    keyring: Keyring | None
    events: list[Event] = attrs.Factory(list)
    #: Query name -> what this member's application answers (None: it does not).
    answers: dict[str, bytes] = attrs.Factory(dict)
    stopped: trio.Event = attrs.Factory(trio.Event)

    def received(self, name: str | None = None) -> list[QueryReceived]:
        return [
            e for e in self.events
            if isinstance(e, QueryReceived) and (name is None or e.name == name)
        ]

    def crash(self) -> None:
        self.scope.cancel()


class Cluster:
    def __init__(self, nursery: trio.Nursery, config: Config) -> None:
        self.nursery = nursery
        self.config = config
        self.network = MemoryNetwork(latency_s=0.001, rng=random.Random(11))
        self.members: dict[str, Member] = {}

    async def start(
        self,
        name: str,
        *,
        keyring: Keyring | None = None,
        keyring_file: pathlib.Path | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Member:
        addr: Address = (f"10.0.0.{len(self.members) + 1}", 7946)
        node = Node(
            self.config,
            name=name,
            bind=addr,
            seeds=[next(iter(self.members.values())).node.addr] if self.members else [],
            meta=encode_tags(tags) if tags else b"",
            seed=sum(name.encode()),
            transport_factory=lambda handler: self.network.open(addr, handler),
            join_backoff_s=0.2,
            join_backoff_max_s=2.0,
            security=SecurityConfig(keyring=keyring, label="q"),
            keyring_file=keyring_file,
        )
        member: Member = await self.nursery.start(self._run, node, keyring)
        self.members[name] = member
        return member

    async def _run(
        self, node: Node, keyring: Keyring | None, *, task_status: trio.TaskStatus[Member]
    ) -> None:
        with trio.CancelScope() as scope:
            async with node:
                member = Member(node.name, node, scope, keyring)
                subscription = node.events(max_buffer=100_000)
                async with trio.open_nursery() as inner:
                    inner.start_soon(_application, member, subscription)
                    task_status.started(member)
                    await trio.sleep_forever()
        member.stopped.set()

    def live(self) -> list[Member]:
        return [m for m in self.members.values() if not m.stopped.is_set()]

    async def converged(self) -> None:
        want = {m.name for m in self.live()}
        await eventually(lambda: all(alive(m) == want for m in self.live()))


async def _application(member: Member, subscription: AsyncIterator[Event]) -> None:
    """What an application embedding the node does: record events, answer queries."""
    async for event in subscription:
        member.events.append(event)
        if isinstance(event, QueryReceived) and event.name in member.answers:
            member.node.respond(event.origin, event.id, member.answers[event.name])


def alive(member: Member) -> set[str]:
    return {m.name for m in member.node.members() if m.status == MemberStatus.ALIVE}


async def eventually(predicate: Callable[[], bool], bound_s: float = BOUND_S) -> None:
    with trio.fail_after(bound_s):
        while not predicate():
            await trio.sleep(0.05)


@contextlib.asynccontextmanager
async def cluster_of(
    names: Iterable[str] = NAMES,
    *,
    encrypted: bool = False,
    keyring_dir: pathlib.Path | None = None,
    tags: Mapping[str, Mapping[str, str]] | None = None,
    config: Config = LOCAL,
) -> AsyncIterator[Cluster]:
    """A converged cluster (of the local profile by default); with `encrypted`, each
    member holds its own keyring of K1 (and with `keyring_dir`, a keyring file
    ``NAME.json`` there)."""
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, config)
        for name in names:
            keyring = Keyring(K1) if encrypted else None
            path = None
            if keyring is not None and keyring_dir is not None:
                path = keyring_dir / f"{name}.json"
                save_keyring(path, keyring)
            await cluster.start(
                name, keyring=keyring, keyring_file=path, tags=(tags or {}).get(name)
            )
        await cluster.converged()
        await trio.sleep(2.0)  # tags and push-pull settle
        yield cluster
        nursery.cancel_scope.cancel()


def by_member(results: Iterable[QueryResult], kind: QueryResultKind) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for result in results:
        if result.kind is kind:
            assert result.member not in found, f"{result.member} reported twice"
            found[result.member] = result.payload
    return found


def false_alarms(cluster: Cluster) -> list[Event]:
    return [
        e for m in cluster.members.values() for e in m.events
        if isinstance(e, MemberSuspected | MemberFailed)
    ]


# ============================================================================ queries


@pytest.mark.parametrize(
    ("config", "reask"),
    [(GOSSIP_ONLY, False), (LOCAL, True), (TINY_BUDGET, True)],
    ids=["gossip-only", "local-reask", "tiny-budget-reask"],
)
async def test_a_query_fans_out_and_every_ack_and_answer_comes_back_once(
    autojump_clock: object, config: Config, reask: bool,
) -> None:
    async with cluster_of(config=config) as cluster:
        for member in cluster.members.values():
            member.answers["uptime"] = f"up:{member.name}".encode()
        asker = cluster.members["n1"].node
        async with asker.query("uptime", b"?", want_ack=True, timeout_s=5.0,
                               reask=reask) as results:
            collected, summary = await results.collect()

        assert by_member(collected, QueryResultKind.ACK) == dict.fromkeys(NAMES, b"")
        assert by_member(collected, QueryResultKind.RESPONSE) == {
            name: f"up:{name}".encode() for name in NAMES
        }
        assert all(r.id == results.id for r in collected)
        assert (summary.acks, summary.responses, summary.dropped) == (5, 5, 0)
        assert summary.complete and summary.name == "uptime"
        # Every member's application saw the query once, the asker's too.
        for member in cluster.members.values():
            (received,) = member.received("uptime")
            assert (received.origin, received.id, received.payload) == ("n1", results.id, b"?")


async def test_results_arrive_as_they_come_and_the_stream_ends_at_the_deadline(
    autojump_clock: object,
) -> None:
    async with cluster_of() as cluster:
        cluster.members["n3"].answers["ping"] = b"pong"
        stream = cluster.members["n1"].node.query("ping", timeout_s=4.0, reask=True)
        started = trio.current_time()
        first = await stream.__anext__()
        assert (first.member, first.kind, first.payload) == ("n3", QueryResultKind.RESPONSE,
                                                            b"pong")
        assert first.at < stream.deadline
        assert [r async for r in stream] == []
        # Nobody else answers: the stream ends at the deadline, not before.
        assert trio.current_time() >= stream.deadline == pytest.approx(started + 4.0)
        summary = stream.summary
        assert summary is not None
        assert (summary.acks, summary.responses, summary.complete) == (0, 1, True)


async def test_name_and_tag_filters_choose_who_receives_and_answers(
    autojump_clock: object,
) -> None:
    tags = {"n2": {"role": "web-1"}, "n3": {"role": "web-2"}, "n4": {"role": "db"}}
    async with cluster_of(tags=tags) as cluster:
        for member in cluster.members.values():
            member.answers["who"] = member.name.encode()
        asker = cluster.members["n1"].node
        by_tag, _ = await asker.query("who", filter_tags={"role": "web-*"}, want_ack=True,
                                      timeout_s=3.0, reask=True).collect()
        by_name, _ = await asker.query("who", filter_nodes=["n4", "n5"], want_ack=True,
                                       timeout_s=3.0, reask=True).collect()
        both, _ = await asker.query("who", filter_nodes=["n2", "n4"],
                                    filter_tags={"role": "web-*"}, timeout_s=3.0,
                                    reask=True).collect()

        assert set(by_member(by_tag, QueryResultKind.RESPONSE)) == {"n2", "n3"}
        assert set(by_member(by_tag, QueryResultKind.ACK)) == {"n2", "n3"}
        assert set(by_member(by_name, QueryResultKind.RESPONSE)) == {"n4", "n5"}
        assert set(by_member(both, QueryResultKind.RESPONSE)) == {"n2"}
        assert [len(m.received("who")) for m in cluster.members.values()] == [0, 2, 1, 1, 1]


async def test_a_member_answers_once_and_not_after_the_deadline(autojump_clock: object) -> None:
    async with cluster_of(NAMES[:3]) as cluster:
        asker, other = cluster.members["n1"], cluster.members["n2"]
        stream = asker.node.query("once", timeout_s=3.0, reask=True)
        await eventually(lambda: bool(other.received("once")))
        (received,) = other.received("once")
        other.node.respond(received.origin, received.id, b"first")
        with pytest.raises(ProtocolError, match="already answered"):
            other.node.respond(received.origin, received.id, b"second")
        # n3 waits past its deadline (the query's timeout from when it received it).
        late = cluster.members["n3"]
        await eventually(lambda: bool(late.received("once")))
        (too_late,) = late.received("once")
        await trio.sleep_until(too_late.deadline)
        with pytest.raises(ProtocolError, match="no open query"):
            late.node.respond(too_late.origin, too_late.id, b"late")
        results, summary = await stream.collect()
        assert [(r.member, r.payload) for r in results] == [("n2", b"first")]
        assert summary.responses == 1


async def test_a_slow_consumer_loses_results_beyond_its_buffer_not_the_protocol(
    autojump_clock: object,
) -> None:
    async with cluster_of() as cluster:
        for member in cluster.members.values():
            member.answers["many"] = b"x"
        stream = cluster.members["n1"].node.query("many", want_ack=True, timeout_s=3.0,
                                                  max_buffer=3, reask=True)
        summary = await stream.wait_finished()  # nobody reads while results arrive
        buffered = [r async for r in stream]
        assert len(buffered) == 3
        assert (summary.acks, summary.responses, summary.dropped) == (5, 5, 7)
        # The cluster carried on meanwhile, and the next query is served in full.
        assert false_alarms(cluster) == []
        _, again = await cluster.members["n1"].node.query(
            "many", timeout_s=3.0, reask=True
        ).collect()
        assert (again.responses, again.dropped) == (5, 0)


async def test_closing_a_stream_early_stops_it_and_the_node_carries_on(
    autojump_clock: object,
) -> None:
    async with cluster_of(NAMES[:3]) as cluster:
        for member in cluster.members.values():
            member.answers["early"] = b"y"
        async with cluster.members["n1"].node.query("early", timeout_s=3.0) as stream:
            first = await stream.__anext__()
        assert first.kind is QueryResultKind.RESPONSE
        assert [r async for r in stream] == []  # closed: nothing more is handed out
        await trio.sleep(4.0)
        assert stream.summary is not None and stream.summary.complete


async def test_bad_queries_are_refused_by_the_caller(autojump_clock: object) -> None:
    async with cluster_of(NAMES[:2]) as cluster:
        node = cluster.members["n1"].node
        with pytest.raises(ProtocolError, match="reserved"):
            node.query("_swim_list-keys")
        with pytest.raises(ProtocolError, match="over the limit"):
            node.query("big", b"x" * 2000)
        with pytest.raises(ProtocolError, match="relay_factor"):
            node.query("relay", relay_factor=9)


async def test_relayed_answers_still_count_once(autojump_clock: object) -> None:
    async with cluster_of() as cluster:
        for member in cluster.members.values():
            member.answers["r"] = b"ok"
        results, summary = await cluster.members["n1"].node.query(
            "r", relay_factor=2, timeout_s=3.0, reask=True
        ).collect()
        assert set(by_member(results, QueryResultKind.RESPONSE)) == set(NAMES)
        assert summary.responses == 5


# ======================================================================= key commands


def keys_of(cluster: Cluster) -> dict[str, tuple[bytes, ...]]:
    return {
        m.name: m.keyring.keys for m in cluster.members.values() if m.keyring is not None
    }


def query_events(member: Member) -> list[Event]:
    return [
        e for e in member.events
        if isinstance(e, QueryReceived | QueryAcked | QueryResponded | QueryFinished)
    ]


async def test_a_key_rotation_reaches_every_member_and_each_reports(
    autojump_clock: object,
) -> None:
    async with cluster_of(encrypted=True) as cluster:
        asker = cluster.members["n2"].node
        everyone = tuple(NAMES)

        installed = await asker.install_key(K2)
        assert (installed.command, installed.members, installed.succeeded) == (
            KeyCommand.INSTALL, everyone, everyone)
        assert installed.ok and installed.summary == "5/5 nodes reported success"
        assert keys_of(cluster) == dict.fromkeys(NAMES, (K1, K2))

        listed = await asker.list_keys()
        assert listed.ok and listed.summary == "5/5 nodes reported success"
        assert listed.keys == {encode_key(K1): 5, encode_key(K2): 5}
        assert listed.primary_keys == {encode_key(K1): 5}
        assert listed.member_keys == dict.fromkeys(NAMES, (encode_key(K1), encode_key(K2)))

        used = await asker.use_key(encode_key(K2))  # base64 text works too
        assert used.ok and used.succeeded == everyone
        assert keys_of(cluster) == dict.fromkeys(NAMES, (K2, K1))

        removed = await asker.remove_key(K1)
        assert removed.ok and removed.succeeded == everyone
        assert keys_of(cluster) == dict.fromkeys(NAMES, (K2,))

        listed = await asker.list_keys()
        assert listed.keys == {encode_key(K2): 5} and listed.primary_keys == {encode_key(K2): 5}

        # The cluster kept talking throughout, with no false alarm...
        await trio.sleep(5.0)
        await cluster.converged()
        assert false_alarms(cluster) == []
        # ... and no application saw any of it: internal queries are the runtime's.
        for member in cluster.members.values():
            assert query_events(member) == []


async def test_with_one_gossip_transmit_key_commands_still_reach_every_member(
    autojump_clock: object,
) -> None:
    async with cluster_of(encrypted=True, config=TINY_BUDGET) as cluster:
        asker = cluster.members["n3"].node
        for command in (asker.install_key(K2), asker.use_key(K2), asker.remove_key(K1)):
            report = await command
            assert report.ok and report.summary == "5/5 nodes reported success"
        assert keys_of(cluster) == dict.fromkeys(NAMES, (K2,))
        # Gossip alone did not do it: the asker re-asked silent members directly.
        assert asker.stats().core.query_reasks > 0
        listed = await asker.list_keys()
        assert listed.ok and listed.keys == {encode_key(K2): 5}


async def test_on_a_lossy_network_a_key_command_reaches_every_live_member(
    autojump_clock: object,
) -> None:
    async with cluster_of(encrypted=True) as cluster:
        links = cluster.network.links
        links.link = attrs.evolve(links.link, loss=0.2)  # datagrams only
        asker = cluster.members["n1"].node
        report = await asker.install_key(K2)
        assert report.members == tuple(NAMES)
        assert report.ok and report.summary == "5/5 nodes reported success"
        assert keys_of(cluster) == dict.fromkeys(NAMES, (K1, K2))


async def test_removing_the_primary_key_is_refused_by_every_member(
    autojump_clock: object,
) -> None:
    async with cluster_of(encrypted=True) as cluster:
        report = await cluster.members["n1"].node.remove_key(K1)
        assert not report.ok and report.succeeded == () and report.no_answer == ()
        assert set(report.failed) == set(NAMES)
        assert all("cannot remove the primary key" in msg for msg in report.failed.values())
        assert report.summary == "0/5 nodes reported success"
        assert keys_of(cluster) == dict.fromkeys(NAMES, (K1,))


async def test_using_a_key_that_is_not_installed_is_refused_where_it_is_missing(
    autojump_clock: object,
) -> None:
    async with cluster_of(encrypted=True) as cluster:
        for name in ("n1", "n4"):  # only the asker and n4 hold K3
            keyring = cluster.members[name].keyring
            assert keyring is not None
            keyring.install(K3)
        report = await cluster.members["n1"].node.use_key(K3)
        assert report.succeeded == ("n1", "n4")
        assert set(report.failed) == {"n2", "n3", "n5"}
        assert all("not installed" in msg for msg in report.failed.values())
        assert report.summary == "2/5 nodes reported success"
        assert keys_of(cluster)["n2"] == (K1,) and keys_of(cluster)["n4"] == (K3, K1)


async def test_a_member_that_is_down_is_reported_as_not_answering(
    autojump_clock: object,
) -> None:
    async with cluster_of(encrypted=True) as cluster:
        down = cluster.members["n5"]
        down.crash()
        await down.stopped.wait()
        # Still alive in every table (not yet detected): it is asked, and is silent.
        assert cluster.members["n1"].node.member("n5").status == MemberStatus.ALIVE  # type: ignore[union-attr]
        report = await cluster.members["n1"].node.install_key(K2)
        assert report.no_answer == ("n5",)
        assert report.succeeded == ("n1", "n2", "n3", "n4") and not report.failed
        assert not report.ok and report.summary == "4/5 nodes reported success"


async def test_key_commands_need_encryption_on_the_asker(autojump_clock: object) -> None:
    async with cluster_of(NAMES[:2]) as cluster:
        node = cluster.members["n1"].node
        for command in (node.install_key(K2), node.use_key(K2), node.remove_key(K2)):
            with pytest.raises(KeyringError, match="encryption is not enabled"):
                await command
        with pytest.raises(KeyringError, match="encryption is not enabled"):
            await node.list_keys()
        assert cluster.members["n2"].received() == []  # nothing was sent


async def test_a_bad_key_is_refused_before_anything_is_sent(autojump_clock: object) -> None:
    async with cluster_of(NAMES[:2], encrypted=True) as cluster:
        node = cluster.members["n1"].node
        with pytest.raises(KeyringError, match="16, 24 or 32 bytes"):
            await node.install_key(b"short")
        with pytest.raises(KeyringError, match="not valid base64"):
            await node.install_key("not base64!")
        assert keys_of(cluster) == dict.fromkeys(NAMES[:2], (K1,))


async def test_each_member_rewrites_its_keyring_file_atomically_after_a_command(
    autojump_clock: object, tmp_path: pathlib.Path,
) -> None:
    async with cluster_of(NAMES[:3], encrypted=True, keyring_dir=tmp_path) as cluster:
        files = {name: tmp_path / f"{name}.json" for name in NAMES[:3]}
        inodes = {name: path.stat().st_ino for name, path in files.items()}
        node = cluster.members["n1"].node

        assert (await node.install_key(K2)).ok
        for name, path in files.items():
            assert load_keyring(path).keys == (K1, K2)
            assert path.stat().st_mode & 0o777 == 0o600
            assert path.stat().st_ino != inodes[name]  # a new file renamed over the old
        assert (await node.use_key(K2)).ok
        assert (await node.remove_key(K1)).ok
        for path in files.values():
            assert load_keyring(path).keys == (K2,)
        # A refused command leaves the files as they were; no temporary file remains.
        before = {name: path.read_bytes() for name, path in files.items()}
        assert not (await node.remove_key(K2)).ok
        assert {name: path.read_bytes() for name, path in files.items()} == before
        assert sorted(os.listdir(tmp_path)) == sorted(f"{name}.json" for name in files)


# ================================================== a member's side, without a network


def sealer(
    keyring: Keyring | None, *, accept_plaintext: bool = False, send_plaintext: bool = False
) -> Sealer:
    return Sealer(keyring=keyring, sender_id=b"12345678", random_bytes=os.urandom,
                  accept_plaintext=accept_plaintext, send_plaintext=send_plaintext)


def answer(name: str, payload: bytes, seal: Sealer | None,
           keyring_file: pathlib.Path | None = None) -> MemberAnswer:
    return answer_key_query(name, payload, seal, keyring_file=keyring_file, size_limit=1024)


def test_a_member_without_keys_or_accepting_plaintext_refuses_key_changes() -> None:
    refusal = answer("_swim_install-key", K2, sealer(None))
    assert not refusal.ok and "encryption is not enabled" in refusal.error

    ring = Keyring(K1)
    upgrading = sealer(ring, accept_plaintext=True)
    refusal = answer("_swim_install-key", K2, upgrading)
    assert not refusal.ok and "accepts plaintext" in refusal.error
    assert ring.keys == (K1,)
    assert answer("_swim_list-keys", b"", upgrading) == MemberAnswer(ok=True, keys=(K1,))

    refusal = answer("_swim_list-keys", b"", sealer(ring, send_plaintext=True))
    assert not refusal.ok and "in the clear" in refusal.error

    refusal = answer("_swim_install-key", b"not a key", sealer(ring))
    assert not refusal.ok and "16, 24 or 32 bytes" in refusal.error
    refusal = answer("_swim_rotate", b"", sealer(ring))
    assert not refusal.ok and "unknown internal query" in refusal.error


def test_a_keyring_file_that_cannot_be_written_is_a_failure_of_that_member(
    tmp_path: pathlib.Path,
) -> None:
    ring = Keyring(K1)
    missing_dir = tmp_path / "gone" / "keys.json"
    result = answer("_swim_install-key", K2, sealer(ring), keyring_file=missing_dir)
    assert not result.ok and result.error.startswith("changed in memory only: ")
    assert ring.keys == (K1, K2)


def test_too_many_keys_to_list_in_one_answer_is_a_clear_failure() -> None:
    ring = Keyring.from_keys([bytes([i]) * 32 for i in range(40)])
    result = answer("_swim_list-keys", b"", sealer(ring))
    assert not result.ok and "40 keys, too many" in result.error


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"[", b"[]", b"{}", b'{"ok": 1}', b'{"ok": true, "keys": "x"}',
     b'{"ok": true, "keys": [1]}', b'{"ok": true, "keys": ["c2hvcnQ="]}',
     b'{"ok": false, "error": 5}', b"[" * 100_000],
)
def test_a_malformed_answer_raises_only_malformed_answer(data: bytes) -> None:
    with pytest.raises(MalformedAnswer):
        decode_answer_untrusted(data)


def test_answers_round_trip_and_a_report_counts_them() -> None:
    for value in (MemberAnswer(ok=True), MemberAnswer(ok=False, error="no"),
                  MemberAnswer(ok=True, keys=(K1, K2))):
        assert decode_answer_untrusted(encode_answer(value)) == value
    report = build_report(
        KeyCommand.LIST, ["a", "b", "c", "d"],
        {
            "a": encode_answer(MemberAnswer(ok=True, keys=(K1, K2))),
            "b": encode_answer(MemberAnswer(ok=True, keys=(K2,))),
            "c": b"garbage",
            "e": encode_answer(MemberAnswer(ok=False, error="nope")),  # joined meanwhile
        },
    )
    assert report.members == ("a", "b", "c", "d", "e")
    assert report.succeeded == ("a", "b") and report.no_answer == ("d",)
    assert report.failed == {"c": "unreadable answer: not a JSON answer", "e": "nope"}
    assert report.keys == {encode_key(K2): 2, encode_key(K1): 1}
    assert report.primary_keys == {encode_key(K1): 1, encode_key(K2): 1}
    assert report.summary == "2/5 nodes reported success" and not report.ok


# ============================================ ThreadedNode: the blocking twins, real UDP


@pytest.mark.slow
def test_thread_hosted_nodes_query_and_rotate_keys_with_blocking_calls() -> None:
    # Real clock and loopback UDP (each ThreadedNode runs its own trio.run); every wait
    # is bounded and ends on an outcome.
    nodes: list[ThreadedNode] = []
    rings = [Keyring(K1) for _ in range(3)]
    try:
        for i, ring in enumerate(rings):
            node = ThreadedNode(
                Config.local(), name=f"t{i}", bind=("127.0.0.1", 0),
                seeds=[nodes[0].addr] if nodes else [], leave_timeout_s=2.0,
                security=SecurityConfig(keyring=ring),
            )
            node.start()
            nodes.append(node)

            def answer(event: Event, node: ThreadedNode = node) -> None:
                if isinstance(event, QueryReceived) and event.name == "hello":
                    node.respond(event.origin, event.id, node.name.encode())

            node.add_callback(answer)
        names = {n.name for n in nodes}
        deadline = time.monotonic() + 30.0
        while not all(
            {m.name for m in n.members() if m.status == MemberStatus.ALIVE} == names
            for n in nodes
        ):
            assert time.monotonic() < deadline, "the nodes did not converge"
            time.sleep(0.05)

        with nodes[0].query("hello", want_ack=True, timeout_s=3.0) as query:
            results, summary = query.collect()
        assert by_member(results, QueryResultKind.RESPONSE) == {n: n.encode() for n in names}
        assert summary is not None and (summary.acks, summary.responses) == (3, 3)

        assert nodes[1].install_key(K2, timeout_s=5.0).summary == "3/3 nodes reported success"
        assert nodes[1].use_key(K2, timeout_s=5.0).ok
        assert nodes[1].remove_key(K1, timeout_s=5.0).ok
        listed = nodes[2].list_keys(timeout_s=5.0)
        assert listed.keys == {encode_key(K2): 3}
        assert [ring.keys for ring in rings] == [(K2,)] * 3
    finally:
        for node in nodes:
            node.stop(timeout_s=10.0)

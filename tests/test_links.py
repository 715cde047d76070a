"""The link model (`transport.links`): delays, loss, duplication, partitions, one-way loss,
clogs, streams, determinism; and that the three in-memory networks (the engine, the
memory transport, the router) take its decisions.

Statistical checks draw a few thousand seeded samples and allow several standard
deviations; every message names the seed.
"""

from __future__ import annotations

import math
import random
import statistics

import attrs
import pytest
import trio
import trio.testing

from simulations import LinkClass, NetworkModel, Partition, Scenario, run
from transport.base import Address
from transport.links import Drop, Fate, Links
from transport.memory import MemoryNetwork, Route

SAMPLES = 20_000


def links(seed: int = 1, **kw: object) -> Links[str]:
    return Links(rng=random.Random(seed), **kw)  # type: ignore[arg-type]


def delays(model: Links[str], n: int = SAMPLES) -> list[float]:
    """One-way delays of `n` datagrams a -> b sent at 0 (first copy of each)."""
    out = []
    for _ in range(n):
        fate = model.datagram("a", "b", 0.0)
        assert fate.arrivals
        out.append(fate.arrivals[0])
    return out


# ----------------------------------------------------------------------- delays


@pytest.mark.parametrize("seed", [1, 2])
def test_exponential_jitter_has_the_configured_mean(seed: int) -> None:
    link = LinkClass(delay_min_s=0.002, jitter_s=0.003, jitter="exponential")
    got = delays(links(seed, link=link))
    assert min(got) >= 0.002
    # Exponential: standard deviation = mean; the sample mean's is mean / sqrt(n).
    tolerance = 5 * 0.003 / math.sqrt(SAMPLES)
    assert statistics.fmean(got) == pytest.approx(link.mean_delay_s(), abs=tolerance), seed
    assert statistics.pstdev(got) == pytest.approx(0.003, rel=0.05), seed


@pytest.mark.parametrize("seed", [1, 2])
def test_uniform_jitter_is_uniform_on_twice_the_mean(seed: int) -> None:
    link = LinkClass.wan()  # 30 ms + uniform jitter of mean 10 ms
    got = delays(links(seed, link=link))
    assert 0.030 <= min(got) < 0.0302 and 0.0498 < max(got) <= 0.050, seed
    tolerance = 5 * (0.020 / math.sqrt(12)) / math.sqrt(SAMPLES)
    assert statistics.fmean(got) == pytest.approx(0.040, abs=tolerance), seed


def test_no_jitter_is_a_fixed_delay_and_draws_nothing() -> None:
    model = links(link=LinkClass.fixed(0.005))
    state = model.rng.getstate()
    assert set(delays(model, 100)) == {0.005}
    assert model.delay("a", "b") == 0.005
    assert model.rng.getstate() == state


def test_zones_pick_the_link_class() -> None:
    model = links(link=LinkClass.fixed(0.001), cross_zone=LinkClass.fixed(0.050),
                  zones={"a": 0, "b": 1, "c": 0})
    assert model.datagram("a", "c", 0.0).arrivals == (0.001,)
    assert model.datagram("a", "b", 0.0).arrivals == (0.050,)
    assert model.datagram("b", "a", 0.0).arrivals == (0.050,)
    assert model.datagram("a", "unzoned", 0.0).arrivals == (0.001,)  # zone 0
    assert model.link_between("a", "b").delay_min_s == 0.050


# ----------------------------------------------------------------- loss, duplicates


@pytest.mark.parametrize("seed", [3, 4])
def test_loss_and_duplication_rates(seed: int) -> None:
    model = links(seed, link=attrs.evolve(LinkClass.lan(), loss=0.2, duplicate=0.1))
    fates = [model.datagram("a", "b", 0.0) for _ in range(SAMPLES)]
    lost = sum(f.drop is Drop.LOST for f in fates)
    delivered = [f for f in fates if f.drop is None]
    duplicated = [f for f in delivered if f.duplicated]
    sigma = math.sqrt(0.2 * 0.8 / SAMPLES)
    assert abs(lost / SAMPLES - 0.2) < 5 * sigma, seed
    sigma = math.sqrt(0.1 * 0.9 / len(delivered))
    assert abs(len(duplicated) / len(delivered) - 0.1) < 5 * sigma, seed
    assert all(len(f.arrivals) == 2 for f in duplicated)
    assert all(len(f.arrivals) == 1 for f in delivered if not f.duplicated)
    # Each copy has its own delay.
    assert sum(f.arrivals[0] != f.arrivals[1] for f in duplicated) == len(duplicated)


# ------------------------------------------------------------------- partitions


def impaired(model: Links[str]) -> bool:
    return model.impaired


def test_symmetric_partition_cuts_both_ways_and_heals() -> None:
    model = links(link=LinkClass.fixed(0.001))
    assert not impaired(model)
    pid = model.partition([("a", "b"), ("c",)])
    assert impaired(model)
    assert model.datagram("a", "b", 0.0).arrivals == (0.001,)
    assert model.datagram("a", "c", 0.0) == Fate((), Drop.PARTITIONED)
    assert model.datagram("c", "a", 0.0).drop is Drop.PARTITIONED
    # Unlisted endpoints form one more group.
    assert model.datagram("d", "e", 0.0).drop is None
    assert model.datagram("d", "a", 0.0).drop is Drop.PARTITIONED
    assert model.heal(pid) and not model.heal(pid)
    assert not model.impaired
    assert model.datagram("a", "c", 0.0).drop is None


def test_one_way_partition_cuts_only_from_the_first_group() -> None:
    model = links(link=LinkClass.fixed(0.001))
    model.partition([("a", "b")], one_way=True)
    assert model.datagram("a", "c", 0.0).drop is Drop.PARTITIONED
    assert model.datagram("b", "c", 0.0).drop is Drop.PARTITIONED
    assert model.datagram("c", "a", 0.0).drop is None
    assert model.datagram("a", "b", 0.0).drop is None
    assert model.reachable("c", "a", 0.0) and not model.reachable("a", "c", 0.0)
    # A stream needs both directions: cut whichever end opens it.
    assert model.connectable("c", "a", 0.0) is Drop.PARTITIONED
    assert model.connectable("a", "c", 0.0) is Drop.PARTITIONED
    assert model.connectable("a", "b", 0.0) is None


def test_partitions_add_up_and_heal_separately() -> None:
    model = links()
    first = model.partition([("a",)])
    model.partition([("b",)])
    assert model.datagram("a", "c", 0.0).drop is Drop.PARTITIONED
    assert model.datagram("b", "c", 0.0).drop is Drop.PARTITIONED
    model.heal(first)
    assert model.datagram("a", "c", 0.0).drop is None
    assert model.datagram("b", "c", 0.0).drop is Drop.PARTITIONED
    model.heal_all()
    assert model.datagram("b", "c", 0.0).drop is None


def test_an_endpoint_in_two_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="two partition groups"):
        links().partition([("a",), ("a", "b")])


# ---------------------------------------------------------------- one-way loss


def test_windowed_block_is_one_way_and_ends_by_itself() -> None:
    model = links(link=LinkClass.fixed(0.001))
    model.set_loss("a", "b", 1.0, until=10.0)
    state = model.rng.getstate()
    assert model.datagram("a", "b", 5.0) == Fate((), Drop.ONE_WAY)
    assert model.rng.getstate() == state  # a block draws nothing
    assert model.datagram("b", "a", 5.0).drop is None
    assert model.connectable("b", "a", 5.0) is Drop.ONE_WAY
    assert model.datagram("a", "b", 10.0).arrivals == (10.001,)
    assert not model.impaired
    assert model.connectable("b", "a", 10.0) is None


@pytest.mark.parametrize("seed", [5, 6])
def test_partial_one_way_loss_rate_and_the_permanent_floor(seed: int) -> None:
    model = links(seed, one_way={("a", "b"): 0.1})
    model.set_loss("a", "b", 0.4, until=100.0)  # the larger applies
    fates = [model.datagram("a", "b", 1.0) for _ in range(SAMPLES)]
    rate = sum(f.drop is Drop.ONE_WAY for f in fates) / SAMPLES
    assert abs(rate - 0.4) < 5 * math.sqrt(0.4 * 0.6 / SAMPLES), seed
    # Partial loss does not stop streams (TCP retransmits).
    assert model.connectable("a", "b", 1.0) is None
    model.heal_all()  # the permanent loss stays
    assert model.one_way_loss("a", "b", 1.0) == 0.1
    assert model.impaired


# ------------------------------------------------------------------------ clogs


def test_clog_holds_datagrams_until_it_ends() -> None:
    model = links(link=LinkClass.fixed(0.001))
    model.clog("a", "b", until=8.0)
    fate = model.datagram("a", "b", 5.0)
    assert fate.clogged and fate.drop is None
    assert fate.arrivals == pytest.approx((8.001,))
    assert model.datagram("b", "a", 5.0) == Fate((5.001,))
    assert model.datagram("a", "b", 8.0) == Fate((8.001,))
    assert not model.impaired


def test_clog_delays_every_copy() -> None:
    model = links(7, link=attrs.evolve(LinkClass.fixed(0.001), duplicate=1.0))
    model.clog("a", "b", until=2.0)
    fate = model.datagram("a", "b", 1.0)
    assert fate.duplicated and fate.clogged
    assert fate.arrivals == pytest.approx((2.001, 2.001))


# ---------------------------------------------------------------------- streams


@pytest.mark.parametrize("seed", [8, 9])
def test_streams_ignore_datagram_loss_but_not_stream_loss(seed: int) -> None:
    model = links(seed, link=attrs.evolve(LinkClass.lan(), loss=0.5))
    assert all(model.stream("a", "b", 0.0) is None for _ in range(1000))
    model.link = attrs.evolve(model.link, stream_loss=0.25)
    failed = sum(model.stream("a", "b", 0.0) is Drop.LOST for _ in range(SAMPLES))
    assert abs(failed / SAMPLES - 0.25) < 5 * math.sqrt(0.25 * 0.75 / SAMPLES), seed


def test_stream_leg_delay_is_the_link_delay() -> None:
    model = links(10, link=LinkClass.lan())
    legs = [model.delay("a", "b") for _ in range(SAMPLES)]
    assert min(legs) >= 0.0002
    assert statistics.fmean(legs) == pytest.approx(0.0005, rel=0.05)


# ------------------------------------------------------------------ determinism


def decisions(seed: int) -> list[Fate | Drop | None]:
    model = links(seed, link=LinkClass(loss=0.1, duplicate=0.1, stream_loss=0.1))
    model.set_loss("b", "a", 0.5, until=50.0)
    model.clog("c", "a", until=30.0)
    model.partition([("d",)], one_way=True)
    out: list[Fate | Drop | None] = []
    for t in range(100):
        for src in "abcd":
            out.append(model.datagram(src, "a" if src != "a" else "b", float(t)))
        out.append(model.stream("a", "b", float(t)))
    return out


def test_same_seed_same_decisions() -> None:
    assert decisions(11) == decisions(11)
    assert decisions(11) != decisions(12)


def test_route_override_replaces_the_link_draws_only() -> None:
    model = links(link=LinkClass.fixed(0.001))
    model.partition([("a",)])
    calls: list[str] = []

    def route() -> list[float]:
        calls.append("x")
        return [0.0, 0.5, -1.0]

    assert model.datagram("a", "b", 0.0, route).drop is Drop.PARTITIONED
    assert calls == []  # not asked about a partitioned datagram
    fate = model.datagram("b", "c", 0.0, route)
    assert fate.arrivals == (0.001, 0.501, 0.001) and fate.duplicated
    assert model.datagram("b", "c", 0.0, list).drop is Drop.LOST


# --------------------------------------------------- the three networks use it


def small(network: NetworkModel, *faults: Partition) -> Scenario:
    return Scenario(nodes=10, duration_s=30.0, seed=3, network=network, trace=True,
                    faults=faults)


@pytest.mark.parametrize("network", [
    NetworkModel.lan().with_loss(0.05).with_duplicates(0.05),
    NetworkModel(zones=2, link=LinkClass.lan(), cross_zone=attrs.evolve(
        LinkClass.wan(), loss=0.05)),
    NetworkModel(link=LinkClass(jitter="none", loss=0.1)),
], ids=["lan", "zones", "no-jitter"])
def test_engine_fast_path_is_the_model_decision(network: NetworkModel) -> None:
    """The engine runs steps 3-5 inline while the network is unimpaired. A partition
    that cuts nothing (everyone in one group) sends every datagram through
    `Links.datagram` instead: the trace must not change."""
    fast = run(small(network))
    everyone = tuple(range(10))
    general = run(small(network, Partition(groups=(everyone,), at=0.0)))
    assert fast.trace_digest == general.trace_digest, "seed 3"
    assert fast.network == general.network


async def test_memory_network_arrivals_are_the_model_decisions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link = attrs.evolve(LinkClass.lan(), loss=0.2, duplicate=0.2)
    net = MemoryNetwork(link=link, rng=random.Random(13))
    reference: Links[Address] = Links(rng=random.Random(13), link=link)
    a_addr, b_addr = ("10.0.0.1", 1), ("10.0.0.2", 1)

    async def echo(data: bytes, addr: Address) -> bytes:
        return data

    async with net.open(a_addr, echo) as a, net.open(b_addr, echo) as b:
        start = trio.current_time()
        expected = []
        for i in range(200):
            await a.send(b"%d" % i, b_addr)
            fate = reference.datagram(a_addr, b_addr, start)
            expected += [(round(t - start, 9), b"%d" % i) for t in fate.arrivals]
        got = []
        with trio.move_on_after(1.0):
            async for data, _ in b.receive():
                got.append((round(trio.current_time() - start, 9), data))
    assert sorted(got) == sorted(expected), "seed 13"
    assert net.stats.datagrams_dropped == 200 - len({d for _, d in expected})


async def test_memory_network_counts_blocked_and_clogged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    net = MemoryNetwork(latency_s=0.001, rng=random.Random(1))
    a_addr, b_addr = ("10.0.0.1", 1), ("10.0.0.2", 1)

    async def echo(data: bytes, addr: Address) -> bytes:
        return data

    async with net.open(a_addr, echo) as a, net.open(b_addr, echo) as b:
        net.links.partition([(a_addr,)], one_way=True)
        await a.send(b"cut", b_addr)
        await b.send(b"back", a_addr)
        net.heal()
        now = trio.current_time()
        net.links.clog(a_addr, b_addr, until=now + 2.0)
        await a.send(b"held", b_addr)
        got = []
        with trio.move_on_after(3.0):
            async for data, _ in b.receive():
                got.append((round(trio.current_time() - now, 6), data))
        assert got == [(2.001, b"held")]
        assert net.stats.datagrams_dropped == net.stats.datagrams_blocked == 1
        assert net.stats.datagrams_clogged == 1
        # A custom route hook replaces the link draws, not the clog or the partition.
        net.route = lambda packet: Route.delay(0.5)
        net.links.partition([(a_addr,)])
        await a.send(b"cut again", b_addr)
        assert net.stats.datagrams_blocked == 2


def test_router_uses_the_model() -> None:
    from swim.core import Config
    from tests.router import Router

    router = Router(seed=4)
    cores = router.cluster(4, Config.lan())
    router.run_until(5.0)
    assert router.converged([c.name for c in cores])
    # A one-way partition through the model: member 0 cannot send to the others.
    router.links.partition([(cores[0].addr,)], one_way=True)
    dropped = router.datagrams_dropped
    router.run_until(6.0)
    assert router.datagrams_dropped > dropped
    assert all(
        not router.links.reachable(cores[0].addr, c.addr, router.now) for c in cores[1:]
    )
    router.heal()
    assert not router.links.impaired

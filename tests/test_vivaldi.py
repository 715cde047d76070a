"""Vivaldi coordinates: the update rule converges to a latency space, acks carry them,
bad coordinates from peers are refused."""

from __future__ import annotations

import contextlib
import math
import random
from typing import Any

import pytest
import trio
import trio.testing

from simulations import LinkClass, NetworkModel, Scenario, Simulation
from swim import Config, Node
from swim.core.codec import MalformedMessage, decode_untrusted, encode
from swim.core.messages import Ack
from swim.core.vivaldi import (
    DIMENSIONS,
    Coordinate,
    VivaldiClient,
    estimate_rtt_s,
    median_relative_error,
)
from transport.memory import MemoryNetwork


def test_three_points_on_a_line_are_learned() -> None:
    """a - b - c with 10 ms and 20 ms links: after enough samples the coordinates
    predict all three RTTs (a-c is 30 ms, never measured by b)."""
    rtt = {("a", "b"): 0.010, ("b", "c"): 0.020, ("a", "c"): 0.030}
    rng = random.Random(1)
    clients = {n: VivaldiClient(random.Random(i)) for i, n in enumerate("abc")}
    for _ in range(3000):
        x, y = rng.sample("abc", 2)
        true = rtt.get((x, y)) or rtt[(y, x)]
        clients[x].update(y, clients[y].coordinate, true * rng.uniform(0.95, 1.05))
    pairs = [
        (estimate_rtt_s(clients[x].coordinate, clients[y].coordinate), true)
        for (x, y), true in rtt.items()
    ]
    assert median_relative_error(pairs) < 0.15, pairs


def test_invalid_samples_are_refused() -> None:
    client = VivaldiClient(random.Random(0))
    bad = Coordinate(vec=(math.nan,) * DIMENSIONS)
    before = client.coordinate
    assert client.update("x", bad, 0.01) == before
    assert client.update("x", Coordinate(), -1.0) == before
    assert client.rejected == 2 and client.updates == 0


def test_acks_carry_coordinates_and_hostile_ones_are_malformed() -> None:
    coord = Coordinate(vec=(0.001,) * DIMENSIONS, error=0.5, adjustment=0.0, height=0.0001)
    (ack,) = decode_untrusted(encode([Ack(3, coord)]))
    assert isinstance(ack, Ack) and ack.coord is not None
    assert ack.coord.vec == pytest.approx(coord.vec)  # float32 on the wire
    assert ack.coord.height == pytest.approx(coord.height)
    nan = bytearray(encode([Ack(3, coord)]))
    nan[-4:] = b"\x00\x00\xc0\x7f"  # the height becomes NaN
    with pytest.raises(MalformedMessage):
        decode_untrusted(bytes(nan))


def test_coordinates_predict_rtts_in_a_simulated_wan() -> None:
    """Four zones joined by WAN links, LAN inside: members that never probed each other
    get RTT estimates from their coordinates within Serf's usual error."""
    network = NetworkModel(
        link=LinkClass.lan(), zones=4,
        cross_zone=LinkClass(name="wan", delay_min_s=0.040, jitter_s=0.002, jitter="uniform"),
    )
    sc = Scenario(nodes=24, duration_s=300.0, seed=3, start="converged", network=network)
    sim = Simulation(sc)
    sim.run_until(sc.duration_s)
    engine = sim.engine
    pairs = []
    for i in range(sc.nodes):
        for j in range(i + 1, sc.nodes):
            a, b = engine.core(i), engine.core(j)
            assert a is not None and b is not None
            true = 2 * network.link_between(i, j).mean_delay_s()
            pairs.append((estimate_rtt_s(a.coordinate, b.coordinate), true))
    cross = [(e, t) for e, t in pairs if t > 0.05]
    assert median_relative_error(cross) < 0.2


async def test_a_running_node_estimates_rtts_from_coordinates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nodes on a 5 ms one-way network learn each other's coordinates from probe acks
    and estimate a 10 ms RTT between two peers they both probed (Serf's `serf rtt`)."""
    network = MemoryNetwork(latency_s=0.005, rng=random.Random(1))
    addrs = [(f"10.0.1.{i}", 7946) for i in range(1, 5)]

    def opener(addr: tuple[str, int]) -> Any:
        return lambda handler: network.open(addr, handler)

    async with contextlib.AsyncExitStack() as stack:
        nodes = []
        for i, addr in enumerate(addrs):
            node = Node(Config.lan(), name=f"n{i}", bind=addr, seed=i,
                        seeds=addrs[:1] if i else (), transport_factory=opener(addr))
            nodes.append(await stack.enter_async_context(node))
        await trio.sleep(120.0)
        estimate = nodes[0].estimate_rtt("n1", "n2")
        assert estimate is not None and 0.007 < estimate < 0.013, estimate
        assert nodes[0].estimate_rtt("n1") is not None  # from us
        assert nodes[0].estimate_rtt("nobody") is None

"""Prometheus metrics from `NodeCollector`, always on a private registry."""

from __future__ import annotations

import random
import subprocess
import sys

import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest

from swim import Config, MemberStatus, Node, ThreadedNode
from swim.runtime import TransportFactory
from swim.runtime.metrics import NodeCollector, register_metrics
from swim.security import SecurityConfig
from transport.base import Address
from transport.memory import MemoryNetwork


def addr_of(i: int) -> Address:
    return (f"10.0.0.{i}", 7946)


async def test_metrics_under_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(2))

    def on(addr: Address) -> TransportFactory:
        return lambda handler: network.open(addr, handler)

    nodes = [
        Node(
            Config.local(),
            name=f"n{i}",
            seeds=[addr_of(1)] if i > 1 else [],
            seed=i,
            transport_factory=on(addr_of(i)),
        )
        for i in (1, 2, 3)
    ]
    registry = CollectorRegistry()
    collector = register_metrics(nodes[0], registry)
    assert list(collector.collect()) == []  # not running yet: nothing to report

    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(_serve, node)
        with trio.fail_after(120):
            while len([m for m in nodes[0].members() if m.status == MemberStatus.ALIVE]) < 3:
                await trio.sleep(0.1)
        async with network.open(("10.9.9.9", 1), _no_streams) as rogue:
            # Unframed bytes stop at the sealer; framed ones reach the codec.
            await rogue.send(b"\xffgarbage", nodes[0].addr)
            framer = SecurityConfig().sealer(sender_id=bytes(8), random_bytes=bytes)
            await rogue.send(framer.seal(b"\xffgarbage", now=0.0), nodes[0].addr)
        await trio.sleep(10.0)

        def sample(name: str, **labels: str) -> float | None:
            return registry.get_sample_value(name, {"node": "n1", **labels})

        assert sample("swim_members", status="alive") == 3
        assert sample("swim_members", status="dead") == 0
        assert sample("swim_awareness_score") == 0
        assert (sample("swim_probes_total") or 0) > 5
        assert sample("swim_probe_failures_total") == 0
        assert sample("swim_suspicions_total") == 0
        assert sample("swim_refutes_total") == 0
        assert (sample("swim_datagrams_total", direction="out") or 0) > 0
        assert (sample("swim_bytes_total", direction="out", kind="ping") or 0) > 0
        assert (sample("swim_bytes_total", direction="in", kind="ack") or 0) > 0
        assert (sample("swim_messages_total", direction="in", kind="ping") or 0) > 0
        assert sample("swim_drops_total", reason="malformed") == 1
        assert sample("swim_drops_total", reason="receive_overflow") == 0
        assert sample("swim_packets_rejected_total", reason="unknown_version") == 1
        assert sample("swim_packets_rejected_total", reason="corrupt") == 0
        assert (sample("swim_packets_sealed_total", mode="plaintext") or 0) > 0
        assert sample("swim_packets_sealed_total", mode="sealed") == 0
        assert (sample("swim_packets_opened_total", mode="plaintext") or 0) > 0

        text = generate_latest(registry).decode()
        assert 'swim_members{node="n1",status="alive"} 3.0' in text
        assert "# TYPE swim_probes_total counter" in text
        nursery.cancel_scope.cancel()
    assert list(collector.collect()) != []  # a stopped node still has its last counters


def test_metrics_of_a_threaded_node_from_another_thread() -> None:
    with ThreadedNode(Config.local(), name="solo", bind=("127.0.0.1", 0)) as node:
        registry = CollectorRegistry()
        registry.register(NodeCollector(node, prefix="app_swim"))
        assert registry.get_sample_value(
            "app_swim_members", {"node": "solo", "status": "alive"}
        ) == 1
    registry_after = CollectorRegistry()
    registry_after.register(NodeCollector(node))
    stopped = registry_after.get_sample_value("swim_members", {"node": "solo", "status": "alive"})
    assert stopped is None


def test_prometheus_client_is_imported_only_when_used() -> None:
    code = (
        "import sys, swim, swim.runtime, swim.runtime.metrics; "
        "assert 'prometheus_client' not in sys.modules, 'imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def _serve(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    async with node:
        task_status.started()
        await trio.sleep_forever()


async def _no_streams(data: bytes, src: Address) -> bytes | None:
    return None

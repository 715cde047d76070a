"""Prometheus metrics for a node, read from `Node.stats()` at scrape time.

`NodeCollector` is a custom collector: it keeps no state of its own and turns a fresh
stats snapshot into metric families on every scrape. Register it with the registry of
your choice (the global one only if you pass it)::

    from prometheus_client import CollectorRegistry, generate_latest
    registry = CollectorRegistry()
    register_metrics(node, registry)

prometheus-client is imported only when a scrape happens or a collector is registered,
so the library works without it (install ``swim-lifeguard[metrics]`` to use this).

Thread safety: a `ThreadedNode` hands each read to its own thread, so it can be scraped
from any thread (e.g. ``prometheus_client.start_http_server``). A trio `Node` must be
scraped from its own trio thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from swim.core import MemberState, MemberStatus
from swim.runtime.node import NodeStats
from swim.security.seal import Reason

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry


class Observable(Protocol):
    """What the collector reads: `Node` and `ThreadedNode` both qualify."""

    @property
    def name(self) -> str: ...

    def stats(self) -> NodeStats: ...

    def members(self) -> list[MemberState]: ...

    def local_health(self) -> int: ...


class NodeCollector:
    """A Prometheus collector for one node; every metric has a ``node`` label."""

    def __init__(self, node: Observable, *, prefix: str = "swim") -> None:
        self._node = node
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        node = self._node
        try:
            stats = node.stats()
            members = node.members()
            health = node.local_health()
        except RuntimeError:  # not running (yet, or any more): nothing to report
            return
        name = node.name
        p = self._prefix

        def counter(metric: str, doc: str, value: int) -> CounterMetricFamily:
            family = CounterMetricFamily(f"{p}_{metric}", doc, labels=["node"])
            family.add_metric([name], value)
            return family

        by_status = GaugeMetricFamily(
            f"{p}_members", "Members known, by status (this one included).",
            labels=["node", "status"],
        )
        counts = dict.fromkeys(MemberStatus, 0)
        for member in members:
            counts[member.status] += 1
        for status, count in counts.items():
            by_status.add_metric([name, status.name.lower()], count)
        yield by_status

        awareness = GaugeMetricFamily(
            f"{p}_awareness_score",
            "Lifeguard local health score (0 is healthy).",
            labels=["node"],
        )
        awareness.add_metric([name], health)
        yield awareness

        core = stats.core
        yield counter("probes", "Probes started.", core.probes)
        yield counter("probe_failures", "Probes that ended with no ack.", core.probe_failures)
        yield counter("ping_reqs_sent", "Indirect probe requests sent.", core.ping_reqs_sent)
        yield counter("nacks_received", "Nacks received from helpers.", core.nacks_received)
        yield counter("suspicions", "Members this member started suspecting.", core.suspicions)
        yield counter(
            "failures_declared", "Members this member declared dead.", core.failures_declared
        )
        yield counter("refutes", "Suspicions about this member it refuted.", core.refutes)
        yield counter("push_pulls", "Push-pull exchanges started.", core.push_pulls)
        yield counter("push_pulls_failed", "Push-pull exchanges failed.", core.push_pulls_failed)

        datagrams = CounterMetricFamily(
            f"{p}_datagrams", "Datagrams and stream frames, by direction.",
            labels=["node", "direction"],
        )
        datagrams.add_metric([name, "in"], core.datagrams_in)
        datagrams.add_metric([name, "out"], core.datagrams_out)
        yield datagrams

        by_kind = CounterMetricFamily(
            f"{p}_bytes",
            "Bytes by direction and kind of the datagram's first message.",
            labels=["node", "direction", "kind"],
        )
        for direction, counts_by_kind in (
            ("in", core.bytes_in_by_kind),
            ("out", core.bytes_out_by_kind),
        ):
            for kind in sorted(counts_by_kind):
                by_kind.add_metric([name, direction, kind], counts_by_kind[kind])
        yield by_kind

        messages = CounterMetricFamily(
            f"{p}_messages", "Messages by direction and kind, piggybacked ones included.",
            labels=["node", "direction", "kind"],
        )
        for direction, counts_by_kind in (("in", core.messages_in), ("out", core.messages_out)):
            for kind in sorted(counts_by_kind):
                messages.add_metric([name, direction, kind], counts_by_kind[kind])
        yield messages

        transport = stats.transport
        drops = CounterMetricFamily(
            f"{p}_drops", "Input or output dropped, by reason.", labels=["node", "reason"]
        )
        for reason, value in (
            ("malformed", core.malformed),
            ("unexpected", core.unexpected),
            ("implausible_incarnation", core.implausible_incarnation),
            ("send_error", core.send_errors),
            ("receive_overflow", transport.receive_overflows),
            ("oversized", transport.oversized),
            ("stream_rejected", transport.streams_rejected),
            ("stream_failed", stats.streams_failed),
            ("event_subscriber_overflow", stats.subscriber_overflows),
        ):
            drops.add_metric([name, reason], value)
        yield drops

        security = stats.security
        rejected = CounterMetricFamily(
            f"{p}_packets_rejected",
            "Datagrams and stream frames the sealer dropped before decoding, by reason.",
            labels=["node", "reason"],
        )
        for why in Reason:
            rejected.add_metric([name, why.value], security.count(why))
        yield rejected
        for metric, doc, total, plaintext in (
            ("packets_sealed", "Packets framed for the wire, by mode.",
             security.sealed, security.sent_plaintext),
            ("packets_opened", "Packets accepted by the sealer, by mode.",
             security.opened, security.opened_plaintext),
        ):
            family = CounterMetricFamily(f"{p}_{metric}", doc, labels=["node", "mode"])
            family.add_metric([name, "plaintext"], plaintext)
            family.add_metric([name, "sealed"], total - plaintext)
            yield family
        yield counter(
            "packets_opened_by_secondary_key",
            "Sealed packets a secondary key opened (zero for a while: the old key can go).",
            security.opened_by_secondary,
        )


def register_metrics(node: Observable, registry: CollectorRegistry) -> NodeCollector:
    """Register a `NodeCollector` for `node` with `registry`; returns the collector."""
    collector = NodeCollector(node)
    registry.register(collector)
    return collector

"""The node fuzzer's short run: hostile datagrams and stream frames, sent through the real
UDP and TCP transport into a running node of a real 4-node loopback cluster, change
nothing.

It runs the harness of ``benchmarks/fuzz_node.py`` (``python -m benchmarks.fuzz_node``
runs a million inputs) with 10,000 inputs per cluster, plaintext and encrypted, and asserts
what the benchmark reports: no crash, no input with an outcome its class does not allow,
every input accounted for by the target's own counters, member tables unchanged on every
node, no event anywhere during the flood, the cluster still converged, and a peer crashed
afterwards suspected by the target within the protocol's bound.
"""

from __future__ import annotations

import pytest

from benchmarks._fuzz_inputs import LOST, MALFORMED, TRANSPORT, Variant, seal_outcome
from benchmarks._fuzz_report import VariantReport
from benchmarks.fuzz_node import Settings, fuzz_variant
from swim.security import Reason

pytestmark = pytest.mark.slow

INPUTS = 10_000
SEED = 8


def outcomes(report: VariantReport, channel: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for classes in report.outcomes.get(channel, {}).values():
        for outcome, n in classes.items():
            totals[outcome] = totals.get(outcome, 0) + n
    return totals


@pytest.mark.parametrize("variant", list(Variant), ids=lambda v: v.value)
async def test_a_fuzzed_node_drops_everything_and_its_cluster_carries_on(
    variant: Variant,
) -> None:
    settings = Settings(count=INPUTS, seed=SEED, silent_streams=4, wait_failed=False)
    report = await fuzz_variant(settings, variant, INPUTS)
    context = f"seed {SEED}, {variant.value}: {report.findings()}"

    assert report.crashes == [], context
    assert report.violations == 0, report.violation_samples
    # No phantom, no member lost, no status or incarnation changed, anywhere.
    # A real peer may be suspected while the target is starved of CPU by the flood (two
    # test workers share 2 cores): that is liveness under load, not input taken as news.
    # Any other change (a phantom, an incarnation, an address, dead or left) fails.
    assert [c for c in report.table_changes if not _only_suspected(c)] == [], context
    assert report.events_target == [], context
    assert report.events_peers == [], context

    # Every input has an outcome, and the target's counters say the same: each sealer
    # rejection and codec refusal is one input's, each connection the transport cut off
    # is an input that was meant to be, and a lost datagram shows as a drop.
    assert report.accounting == [], context
    datagrams, streams = outcomes(report, "datagram"), outcomes(report, "stream")
    assert sum(datagrams.values()) == report.datagrams > 0
    assert sum(streams.values()) == report.streams > 0
    dropped = report.counters.get("transport.receive_overflows", 0) + report.counters.get(
        "kernel.udp_drops", 0
    )
    assert datagrams.get(LOST, 0) <= dropped
    assert report.counters.get("core.malformed", 0) == (
        datagrams.get(MALFORMED, 0) + streams.get(MALFORMED, 0)
    ) > 0
    assert streams.get(TRANSPORT, 0) == report.counters["transport.streams_rejected"] > 0
    rejected = {r for r in Reason if report.counters.get(f"seal.{r.value}", 0)}
    expected = {Reason.TOO_SHORT, Reason.UNKNOWN_VERSION, Reason.WRONG_LABEL}
    expected |= {Reason.CORRUPT} if variant is Variant.PLAINTEXT else {
        Reason.PLAINTEXT_REFUSED, Reason.UNAUTHENTICATED, Reason.REPLAYED, Reason.STALE
    }
    assert expected <= rejected, context
    assert report.member_packets_rejected == {}, context
    if variant is Variant.ENCRYPTED:
        replays = report.outcomes["datagram"]["replay"]
        assert set(replays) <= {seal_outcome(Reason.REPLAYED), seal_outcome(Reason.STALE)}

    # The cluster is whole and still detects a real crash in time.
    assert report.converged_after, context
    assert report.suspected_after_s is not None, context
    assert report.suspected_after_s <= report.detection_bound_s


def _only_suspected(change: str) -> bool:
    """True if `change` ("... before [...] now [...]") differs only by ALIVE -> SUSPECT."""
    before, sep, now = change.partition(" now ")
    if not sep or "before " not in before:
        return False
    before = before.split("before ", 1)[1]
    return now.replace("<MemberStatus.SUSPECT: 1>", "<MemberStatus.ALIVE: 0>") == before

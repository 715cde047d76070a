"""Pure timeout and limit arithmetic (memberlist's util.go and suspicion.go).

Every function here is a pure function of its arguments, so it is tested with tables
and hypothesis and reused by the simulator's analyses.
"""

from __future__ import annotations

import math


def suspicion_timeout_min_s(suspicion_mult: int, n: int, probe_interval_s: float) -> float:
    """Lifeguard's minimum suspicion timeout: ``mult * max(1, log10(n)) * T``."""
    node_scale = max(1.0, math.log10(max(1, n)))
    return suspicion_mult * node_scale * probe_interval_s


def suspicion_confirmations_needed(
    suspicion_mult: int, n: int, configured: int | None = None
) -> int:
    """K, the independent confirmations that shrink the timeout to its minimum.

    `configured` if given, else ``suspicion_mult - 2`` (memberlist); 0 when there are
    too few other members to ever supply K confirmations (``n - 2 < K``), so the
    minimum applies at once.
    """
    k = suspicion_mult - 2 if configured is None else configured
    return 0 if n - 2 < k else max(0, k)


def remaining_suspicion_time_s(
    confirmations: int, k: int, elapsed_s: float, min_s: float, max_s: float
) -> float:
    """Time left before a suspicion expires (memberlist's ``remainingSuspicionTime``).

    The timeout starts at `max_s` and falls logarithmically towards `min_s` as
    independent confirmations arrive:
    ``timeout = max(min, max - (max - min) * log(C + 1) / log(K + 1))``.
    The result may be negative: the suspicion is already overdue.
    """
    frac = math.log(confirmations + 1.0) / math.log(k + 1.0) if k > 0 else 1.0
    timeout = max(min_s, max_s - (max_s - min_s) * frac)
    return timeout - elapsed_s


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times each broadcast is sent: ``mult * ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


def push_pull_scale(interval_s: float, n: int) -> float:
    """Push-pull interval grown for large clusters (memberlist's ``pushPullScale``).

    Up to 32 members the base interval holds; above, it is multiplied by
    ``ceil(log2(n) - log2(32)) + 1``.
    """
    threshold = 32
    if n <= threshold:
        return interval_s
    multiplier = math.ceil(math.log2(n) - math.log2(threshold)) + 1.0
    return multiplier * interval_s


def awareness_scaled_s(base_s: float, score: int) -> float:
    """A duration scaled by local health: ``base * (score + 1)``."""
    return base_s * (score + 1)


def awareness_delta_for_failed_probe(expected_nacks: int, nacks_received: int) -> int:
    """Awareness change for a probe that got no ack (Lifeguard LHA-probe).

    With helpers able to nack, each missing nack counts against our own health (if the
    helpers could not even tell us the target was silent, the fault is likely ours);
    without any, a failed probe counts +1.
    """
    if expected_nacks > 0:
        return max(0, expected_nacks - nacks_received)
    return 1


#: Fraction of the waiting time after which a ping-req helper sends a nack.
NACK_FRACTION = 0.8


def nack_delay_s(probe_timeout_s: float, probe_interval_s: float) -> float:
    """How long a ping-req helper waits for the target before sending a nack.

    Lifeguard (and memberlist) use about 80 % of the probe timeout. The requester sends
    its ping-req at ``probe_timeout_s`` into a period of ``probe_interval_s``, so the nack
    must also arrive within the ``interval - timeout`` that remain; with memberlist's WAN
    numbers (5 s / 3 s) 80 % of the timeout (2.4 s) would always arrive too late and
    every failed probe would count all its nacks as missing. We take 80 % of the
    shorter of the two.
    """
    remaining_s = probe_interval_s - probe_timeout_s
    window_s = min(probe_timeout_s, remaining_s) if remaining_s > 0 else probe_timeout_s
    return NACK_FRACTION * window_s

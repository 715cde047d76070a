"""Alert bundles on a real core (issue 11): one `StableAlerts` carries the alerts of
several observers about one subject; a member relays the union of what it counted;
bundles that do not fit the configuration, and single alerts that speak for rings
their sender does not observe, are dropped and counted, never raised."""

from __future__ import annotations

import random

import cbor2
import pytest

from swim.core import Config, Core
from swim.core.codec import encode
from swim.core.messages import Message, StableAlert, StableAlerts
from swim.core.stable.views import StableViews
from tests.router import addr_of, name_of

CONFIG = Config.stable_views(Config.local())
N = 20
SUBJECT = name_of(5)


def member() -> tuple[Core, StableViews, int]:
    """Member 0 of a converged 20-member configuration: its core, mode and config id."""
    core = Core(CONFIG, name=name_of(0), addr=addr_of(0), rng=random.Random(1), now=0.0)
    core.bootstrap([Core(CONFIG, name=name_of(i), addr=addr_of(i), rng=random.Random(i),
                         now=0.0).membership.local for i in range(N)], now=0.0)
    stable = core.stable
    assert stable is not None and stable.configuration is not None
    return core, stable, stable.configuration.id


def deliver(core: Core, messages: list[Message], now: float = 1.0) -> None:
    core.receive_datagram(encode(messages), addr_of(1), now=now)


def bundles_sent(core: Core, until: float) -> list[StableAlerts]:
    """The alert bundles member 0 sends while its timers run up to `until`."""
    out: list[StableAlerts] = []
    now = 1.0
    while now < until:
        now += 0.1
        core.handle_timer(now=now)
        for d in core.poll().datagrams:
            out += [m for m in d.messages if isinstance(m, StableAlerts)]
    return out


def test_one_bundle_counts_one_report_per_ring_and_is_relayed_merged() -> None:
    core, stable, conf_id = member()
    deliver(core, [StableAlerts(conf_id, SUBJECT, False, 0b0011)])
    detector = stable.detector
    assert detector is not None and detector.reports(SUBJECT) == 2
    deliver(core, [StableAlerts(conf_id, SUBJECT, False, 0b0110)])
    assert detector.reports(SUBJECT) == 3  # ring 1 was counted already
    sent = bundles_sent(core, 6.0)
    # Our bundle for the subject, re-queued with the union (the queued one replaced).
    assert sent and {b.rings for b in sent} == {0b0111}
    assert {(b.config_id, b.subject, b.up) for b in sent} == {(conf_id, SUBJECT, False)}
    assert stable.counters.bad_alerts == 0


def test_h_rings_in_one_bundle_make_a_proposal() -> None:
    core, stable, conf_id = member()
    deliver(core, [StableAlerts(conf_id, SUBJECT, False, (1 << CONFIG.stable.k) - 1)])
    agreement = stable.agreement
    assert agreement is not None
    assert agreement.vote_of(name_of(0)) == ((SUBJECT, False),)


@pytest.mark.parametrize(("bundle", "why"), [
    (StableAlerts(0, SUBJECT, False, 1 << CONFIG.stable.k), "a ring past K"),
    (StableAlerts(0, SUBJECT, True, 0b1), "a join alert about a member"),
    (StableAlerts(0, "outsider", False, 0b1), "a removal alert about an outsider"),
])
def test_bundles_that_do_not_fit_are_dropped_and_counted(bundle: StableAlerts,
                                                         why: str) -> None:
    core, stable, conf_id = member()
    deliver(core, [StableAlerts(conf_id, bundle.subject, bundle.up, bundle.rings)])
    assert stable.counters.bad_alerts == 1, why
    detector = stable.detector
    assert detector is not None and detector.reports(bundle.subject) == 0, why
    assert bundles_sent(core, 4.0) == [], why


def test_a_bundle_for_another_configuration_is_not_counted() -> None:
    core, stable, conf_id = member()
    deliver(core, [StableAlerts(conf_id + 1, SUBJECT, False, 0b1)])
    assert stable.counters.stale_input == 1
    detector = stable.detector
    assert detector is not None and detector.reports(SUBJECT) == 0


def test_malformed_bundles_are_counted_as_malformed() -> None:
    core, _, _ = member()
    for raw in ([18, 1, SUBJECT, False, 0], [18, 1, SUBJECT, False, 1 << 64],
                [18, 1, SUBJECT, "no", 1]):
        core.receive_datagram(cbor2.dumps([1, raw]), addr_of(1), now=1.0)
    assert core.stats.malformed == 3


def test_a_single_alert_counts_only_the_rings_its_sender_observes() -> None:
    core, stable, conf_id = member()
    detector = stable.detector
    assert detector is not None
    observers = detector.rings.observers_of(SUBJECT)
    sender = observers[0]
    own = [r for r, o in enumerate(observers) if o == sender]
    others = [r for r, o in enumerate(observers) if o != sender][:2]
    deliver(core, [StableAlert(conf_id, sender, SUBJECT, False, tuple(own + others))])
    assert detector.reports(SUBJECT) == len(own)
    assert stable.counters.bad_alerts == 1
    # It travels on as a bundle of its own rings only.
    want = sum(1 << r for r in own)
    assert {b.rings for b in bundles_sent(core, 6.0)} == {want}

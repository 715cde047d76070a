"""The notebooks' experiment code (`simulations.experiments`): closed forms, sizes, and
short runs of every experiment."""

from __future__ import annotations

import math

import attrs
import pytest

from simulations import InlineExecutor, Partition, Stall, experiments
from swim.core import Config


def test_first_probe_expectation_tends_to_e_over_e_minus_1() -> None:
    # Two members: the only other one probes the crashed member every period.
    assert experiments.expected_first_probe_periods(2) == 1.0
    assert experiments.expected_first_probe_periods(100) == pytest.approx(1.5773, abs=1e-4)
    assert experiments.expected_first_probe_periods(10**9) == pytest.approx(
        math.e / (math.e - 1), rel=1e-6)
    with pytest.raises(ValueError):
        experiments.expected_first_probe_periods(1)


def test_bailey_curve_and_its_inverse() -> None:
    n = 1000
    assert experiments.bailey_fraction(0.0, n) == pytest.approx(1 / n)
    for fraction in (0.01, 0.5, 0.99):
        t = experiments.bailey_periods_to(fraction, n)
        assert experiments.bailey_fraction(t, n) == pytest.approx(fraction)
    # c = 2: half the members after ln(n - 1) / 2 periods.
    assert experiments.bailey_periods_to(0.5, n) == pytest.approx(math.log(n - 1) / 2)
    with pytest.raises(ValueError):
        experiments.bailey_periods_to(1.0, n)


def test_probe_failure_formula_matches_the_reference() -> None:
    # REFERENCE.md: p = 0.1, k = 3 gives 0.77 %.
    assert experiments.probe_failure_formula(0.1, 3) == pytest.approx(0.0077, abs=5e-5)
    assert experiments.probe_failure_formula(0.0, 3) == 0.0
    assert experiments.probe_failure_formula(1.0, 0) == 1.0
    assert experiments.probe_failure_formula(0.2, 0) == pytest.approx(1 - 0.8**2)


def test_quantile_interpolates() -> None:
    assert experiments.quantile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert experiments.quantile([1.0, 2.0], 0.25) == 1.25
    assert experiments.quantile([5.0], 0.99) == 5.0
    with pytest.raises(ValueError):
        experiments.quantile([], 0.5)


def test_scale_comes_from_the_environment() -> None:
    assert experiments.scale_from_env({}) == "ci"
    assert experiments.scale_from_env({experiments.SCALE_ENV: "full"}) == "full"
    with pytest.raises(ValueError, match="SWIM_NOTEBOOK_SCALE"):
        experiments.scale_from_env({experiments.SCALE_ENV: "huge"})
    ci, full = experiments.sizes_for("ci"), experiments.sizes_for("full")
    assert ci.workers == 0 and full.workers == 2
    assert ci.interval_nodes < full.interval_nodes and ci.latency_nodes < full.latency_nodes


def test_run_all_keeps_the_order_of_its_items() -> None:
    assert experiments.run_all(str, [3, 1, 2], InlineExecutor()) == ["3", "1", "2"]
    assert isinstance(experiments.make_executor(0), InlineExecutor)


def test_the_paper_arms() -> None:
    arms = experiments.lifeguard_variants()
    assert list(arms) == ["SWIM", "LHA-Probe", "LHA-Suspicion", "Buddy System", "Lifeguard"]
    assert arms["SWIM"] == Config.paper_swim() and arms["Lifeguard"] == Config.paper_lifeguard()
    swim = Config.paper_swim()
    # Each extension alone differs from SWIM only in its own switches.
    assert arms["Buddy System"] == attrs.evolve(swim, buddy_system=True)
    assert arms["LHA-Probe"] == attrs.evolve(swim, awareness=True, nacks=True)
    suspicion = arms["LHA-Suspicion"]
    assert suspicion.dynamic_suspicion and not suspicion.awareness and not suspicion.nacks
    assert (suspicion.suspicion_max_timeout_mult, suspicion.suspicion_confirmations) == (6, 3)
    paper = experiments.swim_paper_config()
    assert not (paper.gossip_timer or paper.push_pull or paper.tcp_fallback_ping)


def test_stall_scenario_is_the_interval_experiment() -> None:
    sc = experiments.stall_scenario(64, 8, 4.0, 1.0, duration_s=120.0, seed=3)
    (stall,) = sc.faults
    assert isinstance(stall, Stall)
    assert len(stall.members) == 8 and 0 not in stall.members
    assert (stall.at, stall.duration_s, stall.interval_s, stall.mode) == (20.0, 4.0, 1.0, "input")
    assert stall.cycles == 20 and stall.windows()[-1][1] <= 120.0
    assert sc.seed == 3 and sc.start == "converged"
    # The same members for every arm and seed: they depend on the sizes alone.
    again = experiments.stall_scenario(64, 8, 16.0, 1.0, duration_s=60.0, seed=9)
    assert again.faults[0].members == stall.members  # type: ignore[union-attr]


def test_crash_scenario_crashes_just_before_period_boundaries() -> None:
    sc = experiments.crash_scenario(20, 1, 3, Config.lan(), every_s=15.0)
    ats = [f.at for f in sc.faults]  # type: ignore[union-attr]
    assert ats == pytest.approx([15 - experiments.CRASH_LEAD_S, 30 - experiments.CRASH_LEAD_S,
                                 45 - experiments.CRASH_LEAD_S])
    assert sc.duration_s == 90.0


def test_flip_flop_faults_alternate() -> None:
    faults = experiments.flip_flop_faults(10, (8, 9), start_s=10.0, on_s=10.0, off_s=5.0,
                                          until_s=50.0)
    windows = [(f.at, f.heal_at) for f in faults if isinstance(f, Partition)]
    assert windows == [(10.0, 20.0), (25.0, 35.0), (40.0, 50.0)]
    # One way, from everyone else to the flappers: they lose their ingress.
    assert all(isinstance(f, Partition) and f.one_way
               and f.groups == (tuple(range(8)), (8, 9)) for f in faults)


def test_view_summary_ignores_flappers() -> None:
    rows = [{"t": 0.0, "observer": 0, "flapper": False, "view_size": 3},
            {"t": 0.0, "observer": 1, "flapper": False, "view_size": 2},
            {"t": 0.0, "observer": 2, "flapper": True, "view_size": 1}]
    assert experiments.view_summary(rows) == [
        {"t": 0.0, "min": 2, "median": 2.5, "max": 3, "distinct_sizes": 2}]


def test_short_swim_experiments() -> None:
    pool = InlineExecutor()
    rows = experiments.first_detection(12, [1], 2, pool)
    assert len(rows) == 4 and {r["variant"] for r in rows} == {
        "lock step, uniform", "unsynchronised, round robin"}
    lock = [r for r in rows if r["variant"] == "lock step, uniform"]
    # In lock step a crash 10 ms before a boundary is suspected a whole number of
    # periods (at least one) later.
    for r in lock:
        assert r["first_probe_periods"] >= 1 - 1e-9
        assert r["first_probe_periods"] == pytest.approx(round(r["first_probe_periods"]),
                                                         abs=0.05)
    (load,) = experiments.message_load([10], 20.0, pool)[:1]
    assert load["datagrams_out_per_period"] == pytest.approx(2.0, abs=0.05)
    spread = experiments.dissemination(20, [1], pool, periods=10)
    swim = [r for r in spread if r["variant"] == "SWIM (paper)"]
    assert swim[0]["informed"] == 1 and swim[-1]["fraction"] == 1.0
    assert experiments.periods_to_fraction(swim, 1.0) == swim[-1]["periods"]
    (probe,) = experiments.probe_failure(10, 30.0, [0.0], [1], pool)
    assert probe["probes"] > 200 and probe["failures"] == 0 and probe["formula"] == 0.0


def test_short_lifeguard_and_flip_flop_experiments() -> None:
    pool = InlineExecutor()
    arms = {k: v for k, v in experiments.lifeguard_variants().items()
            if k in ("SWIM", "Lifeguard")}
    fp = experiments.interval_false_positives(arms, 12, [2], [4.0], [1], executor=pool,
                                              duration_s=30.0)
    assert [(r["variant"], r["C"], r["D"]) for r in fp] == [("SWIM", 2, 4.0),
                                                           ("Lifeguard", 2, 4.0)]
    assert all(r["fp_minus"] <= r["fp"] <= r["raised"] for r in fp)
    latency = experiments.latency_table(experiments.detection_latency(arms, 12, [1], 1, pool))
    assert [r["variant"] for r in latency] == ["SWIM", "Lifeguard"]
    assert all(r["undetected"] == 0 and r["first_failed_median_s"] >= 5 for r in latency)
    ab = experiments.alpha_beta([2], [2], 12, [1], pool, duration_s=30.0, stalled=2,
                                stall_s=4.0, crashes=1)
    assert [(r["alpha"], r["beta"]) for r in ab] == [(2, 2)]
    views = experiments.flip_flop(8, 1, 40.0, pool, on_s=10.0, off_s=10.0)
    sizes = {r["view_size"] for r in views if not r["flapper"]}
    assert 8 in sizes and 7 in sizes  # the flapper left the views and came back

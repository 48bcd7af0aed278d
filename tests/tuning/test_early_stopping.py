"""The median stopping rule for trial early stopping (``mlengine.tuning.early_stopping``)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlengine.tuning.early_stopping import Curve, MedianStoppingRule

RULE = MedianStoppingRule()
# The same rule without the start-fraction wait, to test the other conditions on their own.
EAGER = MedianStoppingRule(start_fraction=0.0)


def curve(values: Sequence[float], *, every: int = 100, start: int = 0) -> Curve:
    """Values reported at steps start, start + every, start + 2 * every, ..."""
    return Curve(tuple((start + i * every, float(v)) for i, v in enumerate(values)))


def stepless(values: Sequence[float]) -> Curve:
    """Values reported by a trainer that never passes a step (all at step 0)."""
    return Curve(tuple((0, float(v)) for v in values))


# Five completed trials, accuracy rising over 10 evaluations at steps 0, 100, ..., 900.
COMPLETED = [curve([0.5 + 0.03 * i + 0.01 * k for i in range(10)]) for k in range(5)]


# --- the basic decision ------------------------------------------------------------------------


def test_stops_a_clearly_bad_trial() -> None:
    reason = RULE.should_stop(curve([0.1, 0.12, 0.11, 0.13, 0.12]), COMPLETED, maximize=True)
    assert reason is not None
    assert "0.13" in reason  # its best value
    assert "step 400" in reason
    assert "below the median" in reason


def test_keeps_a_good_trial() -> None:
    good = curve([0.7, 0.75, 0.8, 0.82, 0.85])
    assert RULE.should_stop(good, COMPLETED, maximize=True) is None


def test_uses_the_best_value_so_far_not_the_latest() -> None:
    # One good early value keeps the trial going even after it falls off.
    spiky = curve([0.9, 0.1, 0.1, 0.1, 0.1])
    assert RULE.should_stop(spiky, COMPLETED, maximize=True) is None


def test_compares_with_running_averages_not_final_values() -> None:
    # Completed trials end high but average low over their first reports.
    completed = [curve([0.0, 0.0, 0.0, 1.0, 1.0]) for _ in range(3)]
    # At step 200 their running average is 0.0, so a trial at 0.1 is above it.
    assert EAGER.should_stop(curve([0.05, 0.1, 0.1]), completed, maximize=True) is None
    # At step 400 it is 0.4: now 0.1 is below.
    assert EAGER.should_stop(curve([0.05, 0.1, 0.1, 0.1, 0.1]), completed, maximize=True)


def test_median_not_mean() -> None:
    # One outlier pulls the mean up to 3.0 but leaves the median at 1.0.
    completed = [curve([v, v]) for v in (1.0, 1.0, 1.0, 0.0, 12.0)]
    assert EAGER.should_stop(curve([2.0, 2.0]), completed, maximize=True) is None
    assert EAGER.should_stop(curve([0.5, 0.5]), completed, maximize=True) is not None


def test_even_number_of_completed_trials_uses_the_middle_mean() -> None:
    completed = [curve([v, v]) for v in (1.0, 2.0, 4.0, 5.0)]  # median 3.0
    assert EAGER.should_stop(curve([3.0, 3.0]), completed, maximize=True) is None
    assert EAGER.should_stop(curve([2.9, 2.9]), completed, maximize=True) is not None


# --- direction ---------------------------------------------------------------------------------


def test_minimisation_flips_the_comparison() -> None:
    losses = [curve([2.0 - 0.1 * i - 0.01 * k for i in range(10)]) for k in range(5)]
    low = curve([0.5, 0.4, 0.3, 0.3, 0.2])
    high = curve([3.0, 2.9, 2.95, 2.9, 2.9])
    assert RULE.should_stop(low, losses, maximize=False) is None
    reason = RULE.should_stop(high, losses, maximize=False)
    assert reason is not None
    assert "2.9 at step 400" in reason
    assert "above the median" in reason
    # The same curves read as "higher is better" swap the verdicts.
    assert RULE.should_stop(low, losses, maximize=True) is not None
    assert RULE.should_stop(high, losses, maximize=True) is None


def test_minimisation_uses_the_lowest_value_so_far() -> None:
    completed = [curve([1.0, 1.0, 1.0]) for _ in range(3)]
    assert EAGER.should_stop(curve([0.5, 5.0, 5.0]), completed, maximize=False) is None
    assert EAGER.should_stop(curve([1.5, 5.0, 5.0]), completed, maximize=False) is not None


# --- ties --------------------------------------------------------------------------------------


@pytest.mark.parametrize("maximize", [True, False])
def test_equal_to_the_median_is_not_stopped(maximize: bool) -> None:
    completed = [curve([v, v, v]) for v in (0.25, 0.5, 0.75)]  # median 0.5 at every step
    assert EAGER.should_stop(curve([0.5, 0.5, 0.5]), completed, maximize=maximize) is None
    worse = 0.5 - 1e-12 if maximize else 0.5 + 1e-12
    reason = EAGER.should_stop(curve([worse, worse, worse]), completed, maximize=maximize)
    assert reason is not None
    # Values that close are written with enough digits to tell them apart.
    assert "the median 0.5 " in reason
    assert f"{worse:.12g}" in reason


def test_all_completed_equal_and_trial_equal_is_not_stopped() -> None:
    completed = [curve([0.3] * 4) for _ in range(6)]
    assert RULE.should_stop(curve([0.3] * 4), completed, maximize=True) is None
    assert RULE.should_stop(curve([0.3] * 4), completed, maximize=False) is None


# --- when no decision is made ------------------------------------------------------------------


def test_no_decision_before_min_completed_trials() -> None:
    bad = curve([0.0, 0.0, 0.0])
    completed = [curve([1.0, 1.0, 1.0]) for _ in range(3)]
    assert EAGER.should_stop(bad, [], maximize=True) is None
    assert EAGER.should_stop(bad, completed[:2], maximize=True) is None
    assert EAGER.should_stop(bad, completed, maximize=True) is not None
    strict = MedianStoppingRule(min_completed_trials=4, start_fraction=0.0)
    assert strict.should_stop(bad, completed, maximize=True) is None
    assert strict.should_stop(bad, [*completed, curve([1.0])], maximize=True) is not None


def test_completed_trials_without_values_do_not_count() -> None:
    bad = curve([0.0, 0.0, 0.0])
    completed = [curve([1.0, 1.0, 1.0]) for _ in range(2)]
    empty = [Curve(()), curve([math.nan, math.inf]), curve([-math.inf])]
    assert EAGER.should_stop(bad, completed + empty, maximize=True) is None
    assert EAGER.should_stop(bad, [*completed, curve([1.0]), *empty], maximize=True)


def test_no_decision_before_min_points() -> None:
    completed = [curve([1.0, 1.0, 1.0]) for _ in range(3)]
    assert EAGER.should_stop(Curve(()), completed, maximize=True) is None
    assert EAGER.should_stop(curve([0.0]), completed, maximize=True) is None
    assert EAGER.should_stop(curve([0.0, 0.0]), completed, maximize=True) is not None
    patient = MedianStoppingRule(min_points=5, start_fraction=0.0)
    assert patient.should_stop(curve([0.0] * 4), completed, maximize=True) is None
    assert patient.should_stop(curve([0.0] * 5), completed, maximize=True) is not None


def test_no_decision_before_start_fraction_of_the_median_last_step() -> None:
    # Completed trials last reported at steps 800, 1000 and 5000: median last step 1000.
    completed = [curve([1.0] * n, every=100) for n in (9, 11, 51)]
    bad_until = {step: curve([0.0] * (step // 50 + 1), every=50) for step in (200, 250, 300)}
    assert RULE.should_stop(bad_until[200], completed, maximize=True) is None  # 200 < 250
    assert RULE.should_stop(bad_until[250], completed, maximize=True) is not None  # reached
    assert RULE.should_stop(bad_until[300], completed, maximize=True) is not None
    late = MedianStoppingRule(start_fraction=0.5)
    assert late.should_stop(bad_until[300], completed, maximize=True) is None
    assert MedianStoppingRule(start_fraction=1.0).should_stop(
        curve([0.0] * 11), completed, maximize=True
    )


def test_start_fraction_counts_reports_for_stepless_curves() -> None:
    completed = [stepless([1.0] * 20) for _ in range(3)]  # last report index 19
    assert RULE.should_stop(stepless([0.0] * 4), completed, maximize=True) is None  # index 3
    assert RULE.should_stop(stepless([0.0] * 6), completed, maximize=True) is not None


# --- which completed trials make the median ----------------------------------------------------


def test_completed_trials_with_no_points_before_the_step_are_left_out() -> None:
    early = [curve([1.0, 1.0, 1.0, 1.0]) for _ in range(3)]  # steps 0..300, average 1.0
    # Four trials that only started reporting at step 1000, with much better values: if they
    # counted, the median would be 9.0.
    late = [curve([9.0, 9.0], start=1000) for _ in range(4)]
    trial = curve([1.5, 1.5, 1.5])  # at step 200
    assert EAGER.should_stop(trial, early + late, maximize=True) is None
    # Once the trial reaches step 1000 they count and it falls below the median.
    later = curve([1.5] * 11)
    reason = EAGER.should_stop(later, early + late, maximize=True)
    assert reason is not None
    assert "the median 9 " in reason


def test_too_few_completed_trials_reported_by_the_step() -> None:
    completed = [curve([1.0, 1.0])] + [curve([1.0, 1.0], start=1000) for _ in range(4)]
    # Only one completed trial had reported by step 200: no decision, however bad.
    assert EAGER.should_stop(curve([0.0, 0.0, 0.0]), completed, maximize=True) is None
    assert EAGER.should_stop(curve([0.0] * 11), completed, maximize=True) is not None


# --- steps -------------------------------------------------------------------------------------


def test_stepless_curves_use_report_indices() -> None:
    completed = [stepless([0.5 + 0.05 * i for i in range(10)]) for _ in range(4)]
    # After 3 reports the completed trials averaged 0.55.
    assert EAGER.should_stop(stepless([0.6, 0.6, 0.6]), completed, maximize=True) is None
    reason = EAGER.should_stop(stepless([0.5, 0.5, 0.5]), completed, maximize=True)
    assert reason == (
        "its best objective so far, 0.5 after 3 reports, is below the median 0.55 of "
        "completed trials' running averages after as many reports"
    )


@pytest.mark.parametrize(
    "steps",
    [
        [0, 0, 0, 0],  # never passed
        [5, 5, 6, 7],  # repeated
        [3, 1, 2, 4],  # out of order
        [10, 20, 30, 20],  # went back
    ],
)
def test_steps_that_do_not_increase_are_replaced_by_report_indices(steps: list[int]) -> None:
    # Completed trials, with proper steps, improve over time: averages 0, 0.5, 1, 1.5 after
    # 1, 2, 3, 4 reports but only 0 at steps <= 30.
    completed = [curve([0.0, 1.0, 2.0, 3.0, 4.0], every=1000) for _ in range(3)]
    trial = Curve(tuple(zip(steps, [1.2, 1.2, 1.2, 1.2], strict=True)))
    # By index, after 4 reports: 1.2 < 1.5.  By step (<= 30) it would have been 1.2 > 0.
    reason = EAGER.should_stop(trial, completed, maximize=True)
    assert reason is not None
    assert "after 4 reports" in reason
    assert "median 1.5 " in reason


def test_one_stepless_completed_trial_switches_everyone_to_report_indices() -> None:
    proper = [curve([0.0, 1.0, 2.0, 3.0, 4.0], every=1000) for _ in range(2)]
    trial = curve([1.2, 1.2, 1.2, 1.2], every=10)  # steps 0..30
    # By step, the completed trials average 0.0 at step 30: the trial is well above.
    assert EAGER.should_stop(trial, [*proper, curve([0.0] * 5, every=1000)], maximize=True) is None
    # A step-less completed trial makes report indices the unit for all: after 4 reports the
    # averages are 1.5, 1.5 and 1.5.
    with_stepless = [*proper, stepless([0.0, 1.0, 2.0, 3.0, 4.0])]
    reason = EAGER.should_stop(trial, with_stepless, maximize=True)
    assert reason is not None
    assert "after 4 reports" in reason


def test_steps_are_compared_by_value_not_by_report_count() -> None:
    # Completed trials reported every 100 steps, the trial every 10: at step 30 only their
    # first report (0.0) counts, although the trial has made 4 reports.
    completed = [curve([0.0, 10.0, 10.0, 10.0], every=100) for _ in range(3)]
    assert EAGER.should_stop(curve([0.5] * 4, every=10), completed, maximize=True) is None
    # At step 100 their average is 5.0.
    reason = EAGER.should_stop(curve([0.5] * 11, every=10), completed, maximize=True)
    assert reason is not None
    assert "0.5 at step 100" in reason
    assert "median 5 " in reason


def test_step_between_reports_uses_the_reports_before_it() -> None:
    completed = [curve([2.0, 4.0, 6.0], every=100) for _ in range(3)]
    # At step 150 the completed trials have reported 2.0 and 4.0: average 3.0.
    assert EAGER.should_stop(curve([3.0, 3.0], every=150), completed, maximize=True) is None
    assert EAGER.should_stop(curve([2.9, 2.9], every=150), completed, maximize=True) is not None


# --- non-finite values -------------------------------------------------------------------------


def test_nan_and_inf_in_completed_trials_are_ignored() -> None:
    clean = [curve([1.0, 1.0, 1.0]) for _ in range(3)]
    dirty = [curve([1.0, math.nan, 1.0]), curve([math.inf, 1.0, 1.0]), curve([1.0, -math.inf])]
    for trial in (curve([0.9, 0.9, 0.9]), curve([1.0, 1.0, 1.0])):
        assert EAGER.should_stop(trial, dirty, maximize=True) == EAGER.should_stop(
            trial, clean, maximize=True
        )
    assert EAGER.should_stop(curve([0.9, 0.9, 0.9]), dirty, maximize=True) is not None


def test_nan_and_inf_in_the_running_trial_are_ignored() -> None:
    completed = [curve([1.0, 1.0, 1.0, 1.0]) for _ in range(3)]
    # +inf would be the best value when maximising, -inf when minimising: both are ignored.
    trial = curve([0.5, math.nan, math.inf, -math.inf])
    assert EAGER.should_stop(trial, completed, maximize=True) is None  # one finite value
    trial = curve([0.5, math.nan, math.inf, -math.inf, 0.5])
    reason = EAGER.should_stop(trial, completed, maximize=True)
    assert reason is not None
    assert "0.5 at step 400" in reason
    reason = EAGER.should_stop(curve([2.0, math.nan, -math.inf, 2.0]), completed, maximize=False)
    assert reason is not None
    assert "2 at step 300" in reason


def test_trailing_nan_does_not_move_the_trial_on() -> None:
    completed = [curve([0.0, 0.0, 10.0, 10.0]) for _ in range(3)]
    # The last finite report is at step 100 (average 0.0), not at the NaN's step 300.
    trial = curve([0.5, 0.5, math.nan, math.nan])
    assert EAGER.should_stop(trial, completed, maximize=True) is None


def test_nan_keeps_its_place_in_the_report_order() -> None:
    completed = [stepless([0.0, 0.0, 4.0, 4.0]) for _ in range(3)]
    # The trial's third report is NaN: its fourth is compared after 4 reports (average 2.0).
    reason = EAGER.should_stop(stepless([1.0, 1.0, math.nan, 1.0]), completed, maximize=True)
    assert reason is not None
    assert "after 4 reports" in reason
    assert "median 2 " in reason


# --- the reason --------------------------------------------------------------------------------


def test_reason_text() -> None:
    completed = [curve([0.74] * 5, every=100) for _ in range(3)]
    reason = RULE.should_stop(curve([0.5, 0.61, 0.6, 0.58, 0.6]), completed, maximize=True)
    assert reason == (
        "its best objective so far, 0.61 at step 400, is below the median 0.74 of completed "
        "trials' running averages at that step"
    )


def test_reason_keeps_the_reported_step() -> None:
    completed = [curve([1.0] * 3, every=10**12) for _ in range(3)]
    reason = EAGER.should_stop(curve([0.0] * 3, every=10**12), completed, maximize=True)
    assert reason is not None
    assert f"at step {2 * 10**12}," in reason


# --- the rule's settings and Curve -------------------------------------------------------------


def test_defaults() -> None:
    assert MedianStoppingRule(min_completed_trials=3, min_points=2, start_fraction=0.25) == RULE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_completed_trials": 0},
        {"min_points": 0},
        {"start_fraction": -0.1},
        {"start_fraction": math.nan},
        {"start_fraction": math.inf},
    ],
)
def test_invalid_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MedianStoppingRule(**kwargs)


def test_curves_stay_plain_values_after_use() -> None:
    used = curve([0.1, 0.2, 0.3])
    RULE.should_stop(used, COMPLETED, maximize=True)
    fresh = curve([0.1, 0.2, 0.3])
    assert used == fresh
    assert hash(used) == hash(fresh)
    assert repr(used) == repr(fresh)


def test_many_long_curves() -> None:
    completed = [
        curve([0.5 + i / 2000 + k / 1000 for i in range(1000)], every=10) for k in range(300)
    ]
    assert RULE.should_stop(curve([0.4] * 500, every=10), completed, maximize=True) is not None
    assert RULE.should_stop(curve([0.9] * 500, every=10), completed, maximize=True) is None


# --- properties --------------------------------------------------------------------------------


def _reference(
    rule: MedianStoppingRule, running: Curve, completed: Sequence[Curve], maximize: bool
) -> bool:
    """The rule written out plainly, point by point."""

    def increasing(c: Curve) -> bool:
        return all(a[0] < b[0] for a, b in zip(c.points, c.points[1:], strict=False))

    def finite(c: Curve) -> list[tuple[int, int, float]]:
        return [(i, s, v) for i, (s, v) in enumerate(c.points) if math.isfinite(v)]

    curves = [c for c in completed if finite(c)]
    run = finite(running)
    if len(curves) < rule.min_completed_trials or len(run) < rule.min_points:
        return False
    by_index = not increasing(running) or not all(increasing(c) for c in curves)

    def where(i: int, s: int) -> int:
        return i if by_index else s

    at = where(*run[-1][:2])
    median_last = statistics.median(where(*finite(c)[-1][:2]) for c in curves)
    if at < rule.start_fraction * median_last:
        return False
    averages = []
    for c in curves:
        values = [v for i, s, v in finite(c) if where(i, s) <= at]
        if values:
            averages.append(sum(values) / len(values))
    if len(averages) < rule.min_completed_trials:
        return False
    median = statistics.median(averages)
    values = [v for _, _, v in run]
    return max(values) < median if maximize else min(values) > median


# Quarter values make ties with the median common; each curve keeps to its own range of values,
# so that trials both better and worse than the median are common; about one value in six is
# NaN or ±inf.  Half the studies have increasing steps throughout; in the other half each
# curve may have steps drawn from a small range, which rarely increase.
NON_FINITE = (math.nan, math.inf, -math.inf)


@st.composite
def curves(draw: st.DrawFn, *, stepped: bool) -> Curve:
    low = draw(st.integers(-8, 8))
    high = draw(st.integers(low, 8))
    size = draw(st.integers(0, 8))  # drawn first, as lists favour short ones
    numbers = draw(st.lists(st.integers(low, high + len(NON_FINITE)), min_size=size, max_size=size))
    values = [n / 4 if n <= high else NON_FINITE[n - high - 1] for n in numbers]
    if stepped or draw(st.booleans()):
        gaps = draw(st.lists(st.integers(1, 3), min_size=len(values), max_size=len(values)))
        steps = [sum(gaps[: i + 1]) for i in range(len(values))]
    else:
        steps = draw(st.lists(st.integers(0, 6), min_size=len(values), max_size=len(values)))
    return Curve(tuple(zip(steps, values, strict=True)))


@st.composite
def studies(draw: st.DrawFn) -> tuple[Curve, list[Curve]]:
    """A running trial's curve and the completed trials' curves."""
    stepped = draw(st.booleans())
    running = draw(curves(stepped=stepped))
    return running, [draw(curves(stepped=stepped)) for _ in range(draw(st.integers(0, 8)))]


RULES = st.builds(
    MedianStoppingRule,
    min_completed_trials=st.integers(1, 4),
    min_points=st.integers(1, 3),
    start_fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
)


@settings(max_examples=500, deadline=None)
@given(RULES, studies(), st.booleans())
def test_matches_a_plain_reference(
    rule: MedianStoppingRule, study: tuple[Curve, list[Curve]], maximize: bool
) -> None:
    running, completed = study
    reason = rule.should_stop(running, completed, maximize=maximize)
    assert (reason is not None) == _reference(rule, running, completed, maximize)


@settings(max_examples=200, deadline=None)
@given(RULES, studies(), st.booleans(), st.randoms())
def test_negating_values_and_direction_gives_the_same_decision(
    rule: MedianStoppingRule,
    study: tuple[Curve, list[Curve]],
    maximize: bool,
    rng: random.Random,
) -> None:
    def negated(c: Curve) -> Curve:
        return Curve(tuple((s, -v) for s, v in c.points))

    running, completed = study
    decision = rule.should_stop(running, completed, maximize=maximize)
    shuffled = [negated(c) for c in completed]
    rng.shuffle(shuffled)
    flipped = rule.should_stop(negated(running), shuffled, maximize=not maximize)
    assert (decision is None) == (flipped is None)

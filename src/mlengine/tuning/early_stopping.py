"""Trial early stopping: the median stopping rule (``enableTrialEarlyStopping``).

A tuning job with ``enableTrialEarlyStopping`` stops running trials that are unlikely to beat
the trials already finished.  :class:`MedianStoppingRule` decides, for one running trial, from
the objective values it has reported so far and the curves of the completed trials:

    Let ``s`` be the step of the running trial's latest report.  The trial is stopped when its
    best objective value so far (highest when maximising, lowest when minimising) is worse than
    the median, over completed trials, of each completed trial's *running average* at ``s`` —
    the mean of the values that trial reported at steps ``<= s``.

Equal to the median is not worse, so a tie never stops a trial.  No decision is made (the trial
goes on) while any of these holds:

* fewer than ``min_completed_trials`` (default 3) completed trials have a curve (at least one
  finite value);
* the running trial has reported fewer than ``min_points`` (default 2) finite values;
* ``s`` is below ``start_fraction`` (default 0.25) times the median last step of the completed
  trials' curves;
* fewer than ``min_completed_trials`` completed trials reported a value at or before ``s``
  (those that did not are left out of the median at ``s``).

Steps.  A curve is a list of ``(step, value)`` reports in the order they were made.  Trainers
that never pass a step report step 0 (or repeat steps, or send them out of order), so when a
curve's steps are not strictly increasing its reports are placed by their *report index*
(0, 1, 2, … in the order reported) instead.  The running trial and the completed trials are
compared in one unit: if the running trial or any completed trial with a curve needs report
indices, report indices are used for all of them.  Then the running trial "at step ``s``" is
the trial after ``s + 1`` reports and a completed trial's running average at ``s`` is the mean
of its first ``s + 1`` reports.

Non-finite values.  NaN and ±inf values are ignored: they count neither as values nor towards
``min_points``, and a curve with no finite value is no curve at all.  They keep their place in
the report order, though, so report indices stay aligned with the trainer's evaluations, and
their steps still count when deciding whether a curve's steps are strictly increasing.

Cost.  The rule is evaluated every second for every running trial.  Each :class:`Curve` turns
its points into numpy arrays (running averages by cumulative sum) once and caches them on the
object, so a caller that keeps the :class:`Curve` objects of completed trials between calls pays
only a binary search per completed trial per decision.  The rule is deterministic: it depends
only on the points, not on the order of ``completed``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

__all__ = ["Curve", "MedianStoppingRule"]


@dataclass(frozen=True)
class Curve:
    """The values one trial reported for the objective metric.

    ``points`` are (step, value) pairs in the order reported.
    """

    points: tuple[tuple[int, float], ...]

    @cached_property
    def _prepared(self) -> _Prepared:
        """The arrays the rule works on, built once per Curve object."""
        return _Prepared.of(self.points)


@dataclass(frozen=True)
class _Prepared:
    """A curve's finite reports, ready for lookups by step or by report index."""

    increasing: bool  # every report's step is greater than the one before
    steps: FloatArray  # the step of each finite report, in report order
    indices: FloatArray  # the report index of each finite report, increasing
    means: FloatArray  # means[j]: the mean of the first j + 1 finite values
    highest: float  # the highest finite value (nan without one)
    lowest: float  # the lowest finite value (nan without one)
    last_report: int  # the report index of the last finite report (-1 without one)

    @staticmethod
    def of(points: Sequence[tuple[int, float]]) -> _Prepared:
        n = len(points)
        flat = np.fromiter(
            itertools.chain.from_iterable(points), dtype=np.float64, count=2 * n
        ).reshape(n, 2)
        all_steps = flat[:, 0]
        values = flat[:, 1]
        increasing = bool(np.all(all_steps[1:] > all_steps[:-1]))
        finite = np.isfinite(values)
        if bool(finite.all()):
            indices: FloatArray = np.arange(n, dtype=np.float64)
            steps, kept = all_steps, values
        else:
            where = np.flatnonzero(finite)
            indices = where.astype(np.float64)
            steps, kept = all_steps[where], values[where]
        means: FloatArray = np.cumsum(kept) / np.arange(1, kept.size + 1, dtype=np.float64)
        if kept.size == 0:
            return _Prepared(increasing, steps, indices, means, math.nan, math.nan, -1)
        return _Prepared(
            increasing=increasing,
            steps=np.ascontiguousarray(steps),
            indices=indices,
            means=means,
            highest=float(kept.max()),
            lowest=float(kept.min()),
            last_report=int(indices[-1]),
        )

    def keys(self, by_index: bool) -> FloatArray:
        """Where each finite report lies: its report index, or its step."""
        return self.indices if by_index else self.steps

    def running_average(self, keys: FloatArray, at: float) -> float | None:
        """The mean of the finite values at keys ``<= at``; None when there are none."""
        count = int(keys.searchsorted(at, side="right"))
        return float(self.means[count - 1]) if count else None


@dataclass(frozen=True)
class MedianStoppingRule:
    """The median stopping rule; see the module docstring for the rule and its defaults."""

    # No decision before this many completed trials with curves.
    min_completed_trials: int = 3
    # A running trial must have reported at least this many (finite) values ...
    min_points: int = 2
    # ... and reached at least this fraction of the median last step of completed trials.
    start_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.min_completed_trials < 1:
            raise ValueError(f"min_completed_trials must be >= 1, not {self.min_completed_trials}")
        if self.min_points < 1:
            raise ValueError(f"min_points must be >= 1, not {self.min_points}")
        if not (math.isfinite(self.start_fraction) and self.start_fraction >= 0):
            raise ValueError(
                f"start_fraction must be a finite number >= 0, not {self.start_fraction}"
            )

    def should_stop(
        self, running: Curve, completed: Sequence[Curve], *, maximize: bool
    ) -> str | None:
        """None to let the trial go on, else a one-sentence reason.

        The reason states the trial's best value, the step and the median it fell below, e.g.
        ``its best objective so far, 0.61 at step 400, is below the median 0.74 of completed
        trials' running averages at that step`` (``after 5 reports`` / ``after as many
        reports`` when report indices stand in for steps).  It names no metric and has no
        final full stop, so that the caller can add its own tag.
        """
        run = running._prepared
        if run.means.size < self.min_points:
            return None
        curves = [c for c in (curve._prepared for curve in completed) if c.means.size]
        if len(curves) < self.min_completed_trials:
            return None

        by_index = not (run.increasing and all(c.increasing for c in curves))
        completed_keys = [c.keys(by_index) for c in curves]
        at = float(run.keys(by_index)[-1])
        median_last = statistics.median(float(keys[-1]) for keys in completed_keys)
        if at < self.start_fraction * median_last:
            return None

        averages = [
            average
            for c, keys in zip(curves, completed_keys, strict=True)
            if (average := c.running_average(keys, at)) is not None
        ]
        if len(averages) < self.min_completed_trials:
            return None
        median = statistics.median(averages)
        best = run.highest if maximize else run.lowest
        if not (best < median if maximize else best > median):
            return None

        best_text, median_text = _distinct(best, median)
        if by_index:
            where, there = f"after {run.last_report + 1} reports", "after as many reports"
        else:
            where, there = f"at step {running.points[run.last_report][0]}", "at that step"
        return (
            f"its best objective so far, {best_text} {where}, is "
            f"{'below' if maximize else 'above'} the median {median_text} "
            f"of completed trials' running averages {there}"
        )


def _distinct(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` written with as few significant digits (at least 4) as tell them apart."""
    for digits in (4, 6, 9, 12):
        a_text, b_text = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if a_text != b_text:
            return a_text, b_text
    return repr(a), repr(b)

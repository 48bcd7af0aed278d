"""The rules of a tuning job's study, independent of how trials are run.

The scheduler (``scheduler/tuning.py``) runs the trials; this module decides, from the job's
HyperparameterSpec and the trials so far (``trainingOutput.trials``, the API view):

* :class:`Study` — the search space, goal, budget and suggester of a job, and the history a
  suggester sees (finished trials with their final objective; running trials as pending);
* :func:`merge_metrics` — folding newly read metric-file records into a trial's curve;
* :func:`sort_trials` — best first, as ``trainingOutput.trials`` is shown;
* :func:`failure_verdict` — whether too many trials failed (``maxFailedTrials``).

``maxFailedTrials`` = 0 (or unset) means the default rule: the job fails once the first
:data:`EARLY_FAILURES` trials (or all trials, when ``maxTrials`` is smaller) have failed with
none succeeding — the trainer is broken, more trials would only fail too — or once more than
half of ``maxTrials`` have failed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.metrics import MetricRecord
from mlengine.domain.resources import (
    GoalType,
    HyperparameterMetric,
    HyperparameterOutput,
    HyperparameterSpec,
    JobState,
)
from mlengine.domain.validation_hyperparameters import (
    DEFAULT_HYPERPARAMETER_METRIC_TAG,
    DEFAULT_MAX_PARALLEL_TRIALS,
    DEFAULT_MAX_TRIALS,
)
from mlengine.tuning.base import Suggester, Trial, make_suggester
from mlengine.tuning.early_stopping import Curve
from mlengine.tuning.space import Params, SearchSpace

#: With maxFailedTrials unset: this many failures before any success fail the job.
EARLY_FAILURES = 3
#: Metric points kept per trial in ``allMetrics``; older points are thinned beyond it.
MAX_CURVE_POINTS = 1000


@dataclass(frozen=True)
class Study:
    """A tuning job's search, built from its HyperparameterSpec (already validated)."""

    space: SearchSpace
    maximize: bool
    max_trials: int
    max_parallel: int
    max_failed: int
    metric_tag: str
    early_stopping: bool
    suggester: Suggester
    seed: int

    @classmethod
    def from_spec(cls, spec: HyperparameterSpec, *, project: str, job_id: str) -> Study:
        """The study of job ``project/job_id``; its seed is derived from the job's name, so
        a restarted server asks the (stateless) suggester the same questions."""
        return cls(
            space=SearchSpace.from_spec(spec.params or []),
            maximize=spec.goal is not GoalType.MINIMIZE,
            max_trials=spec.max_trials or DEFAULT_MAX_TRIALS,
            max_parallel=spec.max_parallel_trials or DEFAULT_MAX_PARALLEL_TRIALS,
            max_failed=spec.max_failed_trials or 0,
            metric_tag=spec.hyperparameter_metric_tag or DEFAULT_HYPERPARAMETER_METRIC_TAG,
            early_stopping=bool(spec.enable_trial_early_stopping),
            suggester=make_suggester(spec.algorithm.value if spec.algorithm else None),
            seed=zlib.crc32(f"{project}/{job_id}".encode()),
        )

    def history(self, trials: Iterable[HyperparameterOutput]) -> list[Trial]:
        """Finished trials as the suggester sees them: a value for those that reported the
        objective, None for failed ones and those that reported nothing. Cancelled trials
        and trials whose parameters are not points of this space (a resumed study with a
        changed spec) are left out."""
        out = []
        for trial in trials:
            if trial.state not in (JobState.SUCCEEDED, JobState.FAILED):
                continue
            params = self._params(trial)
            if params is None:
                continue
            value = trial.final_metric.objective_value if trial.final_metric else None
            if trial.state is JobState.FAILED:
                value = None
            usable = value is not None and math.isfinite(value)
            out.append(Trial(params, float(value) if usable and value is not None else None))
        return out

    def pending(self, trials: Iterable[HyperparameterOutput]) -> list[Params]:
        """Parameters of the trials still running."""
        out = []
        for trial in trials:
            if trial.state is JobState.RUNNING:
                params = self._params(trial)
                if params is not None:
                    out.append(params)
        return out

    def suggest(
        self,
        trials: Sequence[HyperparameterOutput],
        previous: Sequence[HyperparameterOutput],
        count: int,
    ) -> list[Params]:
        """The next ``count`` parameter sets (fewer once a finite space is exhausted).

        ``previous`` are the trials of ``resumePreviousJobId``: they inform the search and
        are never run again, but do not count against this job's budget.
        """
        history = self.history([*previous, *trials])
        return self.suggester.suggest(
            self.space,
            maximize=self.maximize,
            history=history,
            pending=self.pending(trials),
            count=count,
            seed=self.seed,
        )

    def _params(self, trial: HyperparameterOutput) -> Params | None:
        try:
            return self.space.parse(dict(trial.hyperparameters or {}))
        except InvalidArgument:
            return None

    def curve(self, trial: HyperparameterOutput) -> Curve:
        """The trial's objective curve, for early stopping."""
        points = tuple(
            (int(m.training_step or 0), float(m.objective_value))
            for m in trial.all_metrics or []
            if m.objective_value is not None
        )
        return Curve(points)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b


def merge_metrics(
    current: Sequence[HyperparameterMetric],
    records: Sequence[MetricRecord],
    tag: str,
    since: float,
) -> tuple[list[HyperparameterMetric], float]:
    """``current`` plus the records of ``tag`` newer than ``since`` (a timestamp), and the
    newest timestamp seen. (A record stamped exactly ``since`` is new when its step and value
    are not among the latest ``current`` points.)

    Metric files keep a bounded history (the ``hypertune`` package rewrites its last 100
    records), so records are taken by timestamp, never by position. Beyond
    :data:`MAX_CURVE_POINTS` points every other older point is dropped (the first and the
    newest ones stay).
    """
    tagged = [r for r in records if r.tag == tag]
    fresh = sorted((r for r in tagged if r.timestamp > since), key=lambda r: r.timestamp)
    # Records stamped exactly ``since`` were taken before unless they are not among the
    # latest points (two reports within one clock tick, the second read later).
    same = [r for r in tagged if r.timestamp == since]
    if same:
        tail = {(m.training_step, m.objective_value) for m in current[-len(same) :]}
        fresh = [r for r in same if (r.step, r.value) not in tail] + fresh
    if not fresh:
        return list(current), since
    merged = list(current) + [
        HyperparameterMetric(training_step=r.step, objective_value=r.value) for r in fresh
    ]
    while len(merged) > MAX_CURVE_POINTS:
        half = len(merged) // 2
        merged = merged[:half:2] + merged[half:]
    return merged, fresh[-1].timestamp


def sort_trials(
    trials: Iterable[HyperparameterOutput], maximize: bool
) -> list[HyperparameterOutput]:
    """Best first: trials with a final objective by value (ties by trial id), then the
    others by trial id."""

    def key(trial: HyperparameterOutput) -> tuple[int, float, int]:
        value = trial.final_metric.objective_value if trial.final_metric else None
        text = trial.trial_id or ""
        number = int(text) if text.isdigit() else 0
        if value is None or not math.isfinite(value):
            return (1, 0.0, number)
        return (0, -value if maximize else value, number)

    return sorted(trials, key=key)


def failure_verdict(study: Study, trials: Sequence[HyperparameterOutput]) -> str | None:
    """Why the job must fail because of failed trials, or None (see the module docstring)."""
    failed = sum(1 for t in trials if t.state is JobState.FAILED)
    if not failed:
        return None
    if study.max_failed:
        if failed >= study.max_failed:
            return (
                f"{failed} trial(s) failed, reaching "
                f"trainingInput.hyperparameters.maxFailedTrials ({study.max_failed})."
            )
        return None
    succeeded = any(t.state is JobState.SUCCEEDED for t in trials)
    first = min(EARLY_FAILURES, study.max_trials)
    if not succeeded and failed >= first:
        return (
            f"The first {failed} trial(s) all failed and none succeeded, so the trainer looks "
            "broken (maxFailedTrials is unset; set it to allow more failures)."
        )
    if failed * 2 > study.max_trials:
        return (
            f"{failed} of at most {study.max_trials} trials failed, more than half "
            "(maxFailedTrials is unset; set it to allow more failures)."
        )
    return None

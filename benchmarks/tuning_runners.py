"""Optimiser adapters of ``benchmarks/tuning.py`` and the study loop they share.

Every optimiser is driven through the same :class:`Driver` seam: ``ask(count)`` returns
``count`` suggestions (each with the CPU seconds of the call that produced it) and
``tell(handle, value)`` reports a result, None for a failed trial. :func:`run_study` runs
synchronous rounds of ``q`` trials: ask ``q``, evaluate all, tell all, so while a round is
asked its earlier members are pending (optuna sees them as RUNNING trials; ours receives them
as ``pending``). Only the suggest/ask call is timed, with ``time.process_time``.

    ours    mlengine.tuning.bayesian.BayesianOptimizer (the default BAYESIAN algorithm)
    random  mlengine.tuning.random_search.RandomSearch
    tpe     optuna TPESampler(seed=seed), defaults otherwise
    gp      optuna GPSampler(seed=seed), defaults otherwise (torch CPU, one thread)

Optuna distributions (ask/tell with fixed distributions): DOUBLE → FloatDistribution
(log=True for UNIT_LOG_SCALE); INTEGER → IntDistribution (log likewise); CATEGORICAL →
CategoricalDistribution; DISCRETE → a stepped FloatDistribution when the values are evenly
spaced on a linear scale, else a CategoricalDistribution of the values (order lost).
UNIT_REVERSE_LOG_SCALE has no optuna equivalent; optuna samples the mirrored value
w = low + high − x with log=True and we hand the objective x = low + high − w, which is
exactly the reverse-log density (dense near the top of the range).
"""

from __future__ import annotations

import math
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mlengine.domain.resources import ParameterSpec
from tuning_problems import Params, Problem

OPTIMIZERS = ("ours", "random", "tpe", "gp")
#: How ours is asked for a round of q: one suggest(count=1) per trial with the round's
#: earlier suggestions as ``pending`` (as optuna is asked), or one suggest(count=q).
BATCH_STYLES = ("pending", "joint")


@dataclass
class RunRecord:
    """One study: per trial the reported and noiseless values (None = failed) and CPU time."""

    problem: str
    optimizer: str
    q: int
    seed: int
    budget: int
    reported: list[float | None] = field(default_factory=list)
    true: list[float | None] = field(default_factory=list)
    suggest_cpu_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    error: str | None = None


class Driver(Protocol):
    def ask(self, count: int) -> list[tuple[Any, Params, float]]:
        """``count`` suggestions as (handle, params, CPU seconds spent suggesting it)."""
        ...

    def tell(self, handle: Any, value: float | None) -> None: ...

    def preload(self, trials: Sequence[tuple[Params, float | None]]) -> None: ...


def run_study(problem: Problem, driver: Driver, *, budget: int, q: int, seed: int) -> RunRecord:
    """``budget`` trials of ``problem`` in synchronous rounds of ``q`` (module docstring)."""
    record = RunRecord(problem.name, "", q, seed, budget)
    noise = np.random.default_rng([seed, 7919])  # the problem's noise, same for every optimiser
    started = time.perf_counter()
    while len(record.reported) < budget:
        asked = driver.ask(min(q, budget - len(record.reported)))
        results = []
        for handle, params, cpu in asked:
            reported, true = problem.evaluate(params, noise)
            record.reported.append(reported)
            record.true.append(true)
            record.suggest_cpu_s.append(cpu)
            results.append((handle, reported))
        for handle, reported in results:
            driver.tell(handle, reported)
    record.wall_s = time.perf_counter() - started
    return record


# --- ours ----------------------------------------------------------------------------------


class MlengineDriver:
    """A stateless mlengine suggester plus the study state the tuning service would keep."""

    def __init__(self, suggester: Any, specs: Sequence[ParameterSpec], seed: int, style: str):
        from mlengine.tuning.space import SearchSpace

        self.suggester, self.seed, self.style = suggester, seed, style
        self.space = SearchSpace.from_spec(list(specs))
        self.history: list[Any] = []
        self.pending: dict[int, Params] = {}
        self.asked = 0

    def _suggest(self, count: int) -> tuple[list[Params], float]:
        started = time.process_time()
        found = self.suggester.suggest(
            self.space,
            maximize=False,
            history=self.history,
            pending=list(self.pending.values()),
            count=count,
            seed=self.seed,
        )
        cpu = time.process_time() - started
        if len(found) != count:
            raise RuntimeError(f"asked for {count} suggestions, got {len(found)}")
        return found, cpu

    def ask(self, count: int) -> list[tuple[Any, Params, float]]:
        if self.style == "joint":
            found, cpu = self._suggest(count)
            return [(self._register(params), params, cpu / count) for params in found]
        asked = []
        for _ in range(count):
            (params,), cpu = self._suggest(1)
            asked.append((self._register(params), params, cpu))  # pending for the next call
        return asked

    def preload(self, trials: Sequence[tuple[Params, float | None]]) -> None:
        """Add finished trials to the study without asking for them (timing runs)."""
        from mlengine.tuning.base import Trial

        self.history.extend(Trial(params, value) for params, value in trials)

    def _register(self, params: Params) -> int:
        handle, self.asked = self.asked, self.asked + 1
        self.pending[handle] = params
        return handle

    def tell(self, handle: Any, value: float | None) -> None:
        from mlengine.tuning.base import Trial

        self.history.append(Trial(self.pending.pop(handle), value))


# --- optuna --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptunaParam:
    """One ParameterSpec as an optuna distribution and the map back to our value."""

    distribution: Any
    to_value: Callable[[Any], Any]
    #: The inverse of ``to_value``: our value as optuna's (to preload a history).
    to_optuna: Callable[[Any], Any] = lambda value: value


def optuna_param(spec: ParameterSpec) -> OptunaParam:
    """The optuna distribution of ``spec`` (see the module docstring for the choices)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    kind, scale = str(spec.type), str(spec.scale_type or "NONE")
    if kind == "CATEGORICAL":
        return OptunaParam(CategoricalDistribution(list(spec.categorical_values or [])), str)
    if kind == "DISCRETE":
        values = [float(v) for v in spec.discrete_values or []]
        return _discrete_param(values, scale)
    low, high = float(spec.min_value or 0.0), float(spec.max_value or 0.0)
    log = scale in ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")
    mirror = scale == "UNIT_REVERSE_LOG_SCALE"
    if kind == "INTEGER":
        lo, hi = int(low), int(high)
        if mirror:
            flip = lambda w: lo + hi - int(w)  # noqa: E731
            return OptunaParam(IntDistribution(lo, hi, log=True), flip, flip)
        return OptunaParam(IntDistribution(lo, hi, log=log), int)
    if mirror:
        flip_float = lambda w: min(max(low + high - float(w), low), high)  # noqa: E731
        return OptunaParam(FloatDistribution(low, high, log=True), flip_float, flip_float)
    return OptunaParam(FloatDistribution(low, high, log=log), float)


def _discrete_param(values: list[float], scale: str) -> OptunaParam:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    steps = np.diff(values)
    even = len(values) > 1 and bool(np.allclose(steps, steps[0], rtol=1e-9, atol=0.0))
    if even and scale in ("NONE", "UNIT_LINEAR_SCALE"):
        nearest = lambda w: min(values, key=lambda v: abs(v - float(w)))  # noqa: E731
        return OptunaParam(FloatDistribution(values[0], values[-1], step=float(steps[0])), nearest)
    return OptunaParam(CategoricalDistribution(values), float)


class OptunaDriver:
    """optuna ask/tell with fixed distributions; a failed trial is told as FAIL."""

    def __init__(self, sampler: Any, specs: Sequence[ParameterSpec]):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction="minimize", sampler=sampler)
        self.params = {spec.parameter_name: optuna_param(spec) for spec in specs}
        self.distributions = {name: p.distribution for name, p in self.params.items()}

    def ask(self, count: int) -> list[tuple[Any, Params, float]]:
        asked = []
        for _ in range(count):  # all asked before any is told: the others are RUNNING
            started = time.process_time()
            trial = self.study.ask(self.distributions)
            cpu = time.process_time() - started
            params = {n: p.to_value(trial.params[n]) for n, p in self.params.items()}
            asked.append((trial, params, cpu))
        return asked

    def preload(self, trials: Sequence[tuple[Params, float | None]]) -> None:
        """Add finished trials to the study without asking for them (timing runs)."""
        from optuna.trial import TrialState, create_trial

        for params, value in trials:
            ok = value is not None and math.isfinite(value)
            self.study.add_trial(
                create_trial(
                    params={n: p.to_optuna(params[n]) for n, p in self.params.items()},
                    distributions=self.distributions,
                    value=value if ok else None,
                    state=TrialState.COMPLETE if ok else TrialState.FAIL,
                )
            )

    def tell(self, handle: Any, value: float | None) -> None:
        from optuna.trial import TrialState

        if value is None or not math.isfinite(value):
            self.study.tell(handle, state=TrialState.FAIL)
        else:
            self.study.tell(handle, value)


def make_driver(name: str, problem: Problem, seed: int, style: str = "pending") -> Driver:
    """The driver of optimiser ``name`` (one of :data:`OPTIMIZERS`) for one study."""
    if name == "ours":
        from mlengine.tuning.bayesian import BayesianOptimizer

        return MlengineDriver(BayesianOptimizer(), problem.specs, seed, style)
    if name == "random":
        from mlengine.tuning.random_search import RandomSearch

        return MlengineDriver(RandomSearch(), problem.specs, seed, style)
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        return OptunaDriver(optuna.samplers.TPESampler(seed=seed), problem.specs)
    if name == "gp":
        import torch

        torch.set_num_threads(1)
        return OptunaDriver(optuna.samplers.GPSampler(seed=seed), problem.specs)
    raise KeyError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def time_suggestions(
    problem: Problem, optimizer: str, q: int, seed: int, history: int, style: str = "pending"
) -> list[float]:
    """CPU seconds of the suggestion calls of one round of ``q`` after ``history`` trials.

    The history is ``history`` uniformly random points of ``problem`` with their reported
    values (seeded by ``seed``), preloaded without timing; then one round of ``q`` is asked
    (with the "pending" style: ``q`` calls, the i-th with i pending trials).
    """
    from mlengine.tuning.random_search import RandomSearch
    from mlengine.tuning.space import SearchSpace

    space = SearchSpace.from_spec(list(problem.specs))
    points = RandomSearch().suggest(
        space, maximize=False, history=[], pending=[], count=history, seed=seed + 10_000
    )
    noise = np.random.default_rng([seed, 7919])
    trials = [(params, problem.evaluate(params, noise)[0]) for params in points]
    driver = make_driver(optimizer, problem, seed, style)
    driver.preload(trials)
    return [cpu for _, _, cpu in driver.ask(q)]


def run_one(
    problem: Problem, optimizer: str, q: int, seed: int, budget: int, style: str
) -> RunRecord:
    """One study; an exception inside the optimiser is recorded, not raised."""
    try:
        record = run_study(
            problem, make_driver(optimizer, problem, seed, style), budget=budget, q=q, seed=seed
        )
    except Exception:  # one broken optimiser must not lose the other runs
        record = RunRecord(problem.name, optimizer, q, seed, budget)
        record.error = traceback.format_exc(limit=-4)
    record.optimizer = optimizer
    return record

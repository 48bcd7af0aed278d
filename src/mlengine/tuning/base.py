"""The suggester contract: what every search algorithm promises the tuning service.

A suggester is a pure function of its arguments.  The tuning service keeps all state (the
trials run so far and those still running) and asks for the next parameter sets whenever a
slot frees up; a restarted server asks again with the same arguments and gets the same answer.
:func:`make_suggester` maps ``HyperparameterSpec.algorithm`` to an implementation.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from mlengine.domain.errors import InvalidArgument
from mlengine.tuning.space import Key, Params, SearchSpace

#: Where ``algorithm`` lives in a job body, for errors.
ALGORITHM_FIELD = "trainingInput.hyperparameters.algorithm"


@dataclass(frozen=True)
class Trial:
    """A finished (or abandoned) trial as a suggester sees it.

    ``value`` is the objective as reported, in the user's direction (the suggester is told
    whether to maximise); None when the trial failed, was infeasible or reported no metric.
    """

    params: Params
    value: float | None


@runtime_checkable
class Suggester(Protocol):
    """Proposes the next parameter sets of a study.

    Contract, for every implementation:

    * Stateless: everything comes from the arguments; the same arguments give the same result
      (``seed`` is the study's seed, the same on every call).
    * Returns ``count`` parameter sets, each a point of ``space``
      (:meth:`SearchSpace.contains`), fewer only when ``space`` has no more unseen points.
    * Never returns a set whose :meth:`SearchSpace.key` equals that of a ``history`` trial, a
      ``pending`` set or another returned set, while the space still has unseen points.
    * Raises InvalidArgument (naming the field) when it cannot search ``space`` at all.
    """

    def suggest(
        self,
        space: SearchSpace,
        *,
        maximize: bool,
        history: Sequence[Trial],
        pending: Sequence[Params],
        count: int,
        seed: int,
    ) -> list[Params]:
        """The next ``count`` parameter sets to try (see the class docstring)."""
        ...


def seen_keys(space: SearchSpace, history: Sequence[Trial], pending: Sequence[Params]) -> set[Key]:
    """Keys of every parameter set in ``history`` and ``pending``.

    Sets that are not points of ``space`` (a resumed study whose spec has changed) are
    skipped: they cannot collide with a suggestion.
    """
    keys: set[Key] = set()
    for params in _all_params(history, pending):
        try:
            keys.add(space.key(params))
        except InvalidArgument:
            continue
    return keys


def _all_params(history: Sequence[Trial], pending: Sequence[Params]) -> Iterable[Params]:
    yield from (trial.params for trial in history)
    yield from pending


def make_suggester(algorithm: str | None) -> Suggester:
    """The suggester for a ``HyperparameterSpec.algorithm`` value.

    ``RANDOM_SEARCH`` -> RandomSearch, ``GRID_SEARCH`` -> GridSearch,
    ``ALGORITHM_UNSPECIFIED`` or None -> the Bayesian optimiser.  InvalidArgument (field
    :data:`ALGORITHM_FIELD`) for anything else.
    """
    # Imported here: the implementations import this module.
    if algorithm == "RANDOM_SEARCH":
        from mlengine.tuning.random_search import RandomSearch

        return RandomSearch()
    if algorithm == "GRID_SEARCH":
        from mlengine.tuning.grid import GridSearch

        return GridSearch()
    if algorithm in (None, "", "ALGORITHM_UNSPECIFIED"):
        # By name: scipy and the GP stay unimported until a study needs them, and this module
        # does not depend on the optimiser's module to import or type-check.
        bayesian = importlib.import_module("mlengine.tuning.bayesian")
        return cast(Suggester, bayesian.BayesianOptimizer())
    raise InvalidArgument(
        f"Unknown algorithm {algorithm!r} at '{ALGORITHM_FIELD}': use ALGORITHM_UNSPECIFIED "
        "(Bayesian optimisation), GRID_SEARCH or RANDOM_SEARCH.",
        field=ALGORITHM_FIELD,
    )

"""RANDOM_SEARCH: independent draws from the search space, without repeats.

Draws follow :meth:`SearchSpace.sample` (log scales respected).  The generator is seeded from
``(seed, len(history), len(pending))``, so the same study state always gets the same
suggestions and a restarted server continues exactly where it left off.

Repeats are avoided in two ways.  A space of at most :data:`ENUMERATION_LIMIT` points is
enumerated and the suggestions drawn without replacement from its unseen points, each weighted
by its probability under ``sample``, so the distribution is that of ``sample`` conditioned on
"not seen yet" and the space is exhausted exactly.  Larger spaces are sampled with retries;
should the retries fail (a large finite space that is nearly used up) the remaining unseen
points are taken in grid order.  A space with a DOUBLE dimension never runs out in practice.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np

from mlengine.tuning.base import Trial, seen_keys
from mlengine.tuning.space import Key, Params, SearchSpace, level_probabilities

#: Spaces with at most this many points are enumerated rather than sampled with retries.
ENUMERATION_LIMIT = 10_000
#: Sampling rounds before a finite space falls back to grid order.
MAX_ROUNDS = 32


class RandomSearch:
    """The RANDOM_SEARCH suggester (see the module docstring); implements Suggester."""

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
        """Up to ``count`` random unseen points; ``maximize`` and trial values are unused."""
        if count <= 0:
            return []
        rng = np.random.default_rng([seed % 2**64, len(history), len(pending)])
        seen = seen_keys(space, history, pending)
        size = space.cardinality
        if size is not None and size <= ENUMERATION_LIMIT:
            return _draw_from_remaining(space, rng, seen, count)
        found = _sample_unseen(space, rng, seen, count)
        if len(found) < count and size is not None:
            found += _first_unseen(space, seen, count - len(found))
        return found


def _draw_from_remaining(
    space: SearchSpace, rng: np.random.Generator, seen: set[Key], count: int
) -> list[Params]:
    """``count`` distinct unseen points of a small space, weighted as ``sample`` draws them."""
    # Outer products in C order match the order of space.points() (last dimension fastest).
    probabilities = [level_probabilities(dim) for dim in space.dims]
    joint = functools.reduce(np.multiply.outer, probabilities, np.ones(())).ravel()
    remaining: list[Params] = []
    weights: list[float] = []
    for params, weight in zip(space.points(), joint, strict=True):
        if space.key(params) not in seen:
            remaining.append(params)
            weights.append(float(weight))
    if not remaining:
        return []
    p = np.asarray(weights) / sum(weights)
    chosen = rng.choice(len(remaining), size=min(count, len(remaining)), replace=False, p=p)
    return [remaining[int(i)] for i in chosen]


def _sample_unseen(
    space: SearchSpace, rng: np.random.Generator, seen: set[Key], count: int
) -> list[Params]:
    """Up to ``count`` sampled points with new keys; adds their keys to ``seen``."""
    found: list[Params] = []
    batch = max(2 * count, 16)
    for _ in range(MAX_ROUNDS):
        for params in space.sample(rng, batch):
            key = space.key(params)
            if key not in seen:
                seen.add(key)
                found.append(params)
                if len(found) == count:
                    return found
    return found


def _first_unseen(space: SearchSpace, seen: set[Key], count: int) -> list[Params]:
    """The first ``count`` unseen points in grid order (a finite space)."""
    unseen = (params for params in space.points() if space.key(params) not in seen)
    return list(itertools.islice(unseen, count))

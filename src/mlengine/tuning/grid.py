"""GRID_SEARCH: every combination of the parameters' values, in a fixed order.

The grid is the cartesian product of each parameter's values in spec order, the last
parameter changing fastest: INTEGER every whole number from minValue to maxValue, DISCRETE
its ``discreteValues``, CATEGORICAL its ``categoricalValues``.  DOUBLE parameters have no grid
and are rejected.  Each call proposes the first grid points not yet tried or running, so
trials that fail are not retried and the search ends when the grid is used up.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from mlengine.domain.errors import InvalidArgument
from mlengine.tuning.base import Trial, seen_keys
from mlengine.tuning.space import DimensionKind, Params, SearchSpace

PARAMS_FIELD = "trainingInput.hyperparameters.params"


class GridSearch:
    """The GRID_SEARCH suggester (see the module docstring); implements Suggester."""

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
        """The first ``count`` grid points whose keys are in neither history nor pending.

        ``[]`` once the grid is exhausted; ``maximize``, ``seed`` and trial values are unused.
        InvalidArgument (field ``trainingInput.hyperparameters.params[i]``) for a DOUBLE.
        """
        require_grid(space)
        if count <= 0:
            return []
        seen = seen_keys(space, history, pending)
        # Each seen key hides at most one grid point, so this stops within
        # len(seen) + count points even on a huge grid.
        unseen = (params for params in space.points() if space.key(params) not in seen)
        return list(itertools.islice(unseen, count))

    @staticmethod
    def size(space: SearchSpace) -> int:
        """The number of grid points (InvalidArgument for a DOUBLE, as :meth:`suggest`)."""
        return grid_size(space)


def require_grid(space: SearchSpace) -> None:
    """Raise InvalidArgument naming the first DOUBLE parameter of ``space``, if any."""
    for index, dim in enumerate(space.dims):
        if dim.kind is DimensionKind.DOUBLE:
            path = f"{PARAMS_FIELD}[{index}]"
            raise InvalidArgument(
                f"GRID_SEARCH cannot search the DOUBLE parameter {dim.name!r} at '{path}': use "
                "type DISCRETE with discreteValues (e.g. [0.001, 0.01, 0.1]) or INTEGER, or "
                "choose another algorithm.",
                field=path,
            )


def grid_size(space: SearchSpace) -> int:
    """The number of grid points of ``space``; InvalidArgument for a DOUBLE parameter."""
    require_grid(space)
    size = space.cardinality
    assert size is not None  # no DOUBLE dimension, so every dimension is finite
    return size

"""Searching the encoded space for the maximum of an acquisition function.

The encoded space (see :class:`~mlengine.tuning.space.SearchSpace`) is the unit cube, but not
every point of it is a parameter set: INTEGER and DISCRETE parameters live on a grid of allowed
positions and a CATEGORICAL parameter is a one-hot block. :class:`FeatureLayout` knows that
structure and can draw, snap and mutate points so that every candidate the search evaluates is a
real parameter set (the acquisition value of a point between two integers means nothing).

:func:`maximize` is an evolutionary search in that space — a large random population plus
perturbations of given anchor points, then generations of mutation with a shrinking step, then
a short L-BFGS-B polish of the continuous features — evaluating the acquisition in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import optimize  # type: ignore[import-untyped]

from mlengine.tuning.space import DimensionKind, SearchSpace, to_unit

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Acquisition = Callable[[FloatArray], FloatArray]

# INTEGER/DISCRETE parameters with more values than this are searched as continuous features and
# snapped only when decoded.
_MAX_GRID = 5000


@dataclass(frozen=True)
class SearchBudget:
    """How many acquisition evaluations one maximisation may spend."""

    n_random: int = 1500
    n_local: int = 500
    generations: int = 12
    children: int = 250
    elites: int = 12
    initial_step: float = 0.15
    step_decay: float = 0.6
    polish_starts: int = 2
    polish_iterations: int = 25


class FeatureLayout:
    """Where each parameter lives among the encoded features, and what values it may take."""

    def __init__(self, space: SearchSpace) -> None:
        groups: list[int] = []
        continuous: list[int] = []
        grids: list[tuple[int, FloatArray]] = []
        blocks: list[tuple[int, int]] = []
        start = 0
        for group, dim in enumerate(space.dims):
            groups.extend([group] * dim.width)
            if dim.kind is DimensionKind.CATEGORICAL:
                blocks.append((start, dim.width))
            elif dim.kind is DimensionKind.DOUBLE or (dim.cardinality or 0) > _MAX_GRID:
                continuous.append(start)
            else:
                low, high = dim.bounds
                levels = np.array([float(v) for v in dim.levels])
                grids.append(
                    (start, np.unique(np.clip(to_unit(dim.scale, low, high, levels), 0, 1)))
                )
            start += dim.width
        self.n_features = space.n_features
        self.groups: IntArray = np.asarray(groups, dtype=np.int64)
        self.continuous: IntArray = np.asarray(continuous, dtype=np.int64)
        self.grids = tuple(grids)
        self.blocks = tuple(blocks)
        self.categorical_groups: BoolArray = np.array(
            [dim.kind is DimensionKind.CATEGORICAL for dim in space.dims], dtype=np.bool_
        )

    def random(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` uniformly random valid points (uniform on each scaled axis, then snapped)."""
        x = rng.random((n, self.n_features))
        for start, width in self.blocks:
            x[:, start : start + width] = 0.0
            x[np.arange(n), start + rng.integers(width, size=n)] = 1.0
        return self.snap(x)

    def snap(self, x: FloatArray) -> FloatArray:
        """Clip into the cube, move grid features to the nearest allowed value, fix one-hots."""
        x = np.clip(x, 0.0, 1.0)
        for f, positions in self.grids:
            x[:, f] = _nearest(positions, x[:, f])
        for start, width in self.blocks:
            hot = np.argmax(x[:, start : start + width], axis=1)
            x[:, start : start + width] = 0.0
            x[np.arange(x.shape[0]), start + hot] = 1.0
        return x

    def mutate(self, parents: FloatArray, rng: np.random.Generator, step: float) -> FloatArray:
        """One child per row of ``parents``: gaussian steps, ±1 grid moves, new categories."""
        n = parents.shape[0]
        x = parents.copy()
        n_dims = int(self.groups.max()) + 1 if self.groups.size else 1
        # Half of the children move every coordinate, half only a few: the latter find
        # improvements along single axes that a full random step rarely hits in higher d.
        every = rng.random(n) < 0.5
        move_p = np.where(every, 1.0, min(1.0, 2.0 / n_dims))
        moved = rng.random((n, self.n_features)) < move_p[:, None]
        cont = self.continuous
        if cont.size:
            noise = step * rng.standard_normal((n, cont.size))
            x[:, cont] += np.where(moved[:, cont], noise, 0.0)
            x[:, cont] = _reflect(x[:, cont])
        for f, positions in self.grids:
            rows = np.flatnonzero(moved[:, f])
            if rows.size == 0:
                continue
            idx = np.searchsorted(positions, x[rows, f]).clip(0, positions.size - 1)
            jump = np.rint(step * positions.size * rng.standard_normal(rows.size)).astype(np.int64)
            jump = np.where(jump == 0, rng.choice(np.array([-1, 1]), size=rows.size), jump)
            x[rows, f] = positions[np.clip(idx + jump, 0, positions.size - 1)]
        for start, width in self.blocks:
            rows = np.flatnonzero(moved[:, start] & (rng.random(n) < 0.3))
            x[rows, start : start + width] = 0.0
            x[rows, start + rng.integers(width, size=rows.size)] = 1.0
        return self.snap(x)


def _nearest(positions: FloatArray, values: FloatArray) -> FloatArray:
    idx = np.searchsorted(positions, values).clip(1, max(positions.size - 1, 1))
    if positions.size == 1:
        return np.full_like(values, positions[0])
    left = positions[idx - 1]
    right = positions[idx]
    out: FloatArray = np.where(values - left <= right - values, left, right)
    return out


def _reflect(x: FloatArray) -> FloatArray:
    x = np.abs(x)
    x = 1.0 - np.abs(1.0 - x)
    out: FloatArray = np.clip(x, 0.0, 1.0)
    return out


def maximize(
    acquisition: Acquisition,
    layout: FeatureLayout,
    rng: np.random.Generator,
    *,
    anchors: FloatArray,
    budget: SearchBudget | None = None,
    n_best: int = 64,
) -> FloatArray:
    """Candidates sorted by decreasing acquisition (distinct rows, at most ``n_best``).

    ``anchors`` are points worth searching around (the incumbent, the best observations); the
    initial population mixes uniformly random points with their mutations at several scales.
    """
    budget = budget or SearchBudget()
    population = [layout.random(rng, budget.n_random)]
    if anchors.shape[0]:
        parents = anchors[rng.integers(anchors.shape[0], size=budget.n_local)]
        scales = np.exp(rng.uniform(np.log(0.005), np.log(0.3), size=budget.n_local))
        population.append(_mutate_scaled(layout, parents, rng, scales))
    pool = np.unique(np.vstack(population), axis=0)
    values = acquisition(pool)
    step = budget.initial_step
    for _ in range(budget.generations):
        elite = pool[np.argsort(-values)[: budget.elites]]
        parents = elite[rng.integers(elite.shape[0], size=budget.children)]
        children = layout.mutate(parents, rng, step)
        pool = np.vstack([pool, children])
        values = np.concatenate([values, acquisition(children)])
        pool, keep = np.unique(pool, axis=0, return_index=True)
        values = values[keep]
        step *= budget.step_decay
    order = np.argsort(-values)
    pool, values = pool[order], values[order]
    polished = [
        _polish(acquisition, layout, pool[i], budget.polish_iterations)
        for i in range(min(budget.polish_starts, pool.shape[0]))
    ]
    if polished:
        extra = np.vstack([p for p, _ in polished])
        extra_values = np.array([v for _, v in polished])
        pool = np.vstack([extra, pool])
        values = np.concatenate([extra_values, values])
        order = np.argsort(-values, kind="stable")
        pool = pool[order]
    return pool[:n_best]


def _mutate_scaled(
    layout: FeatureLayout, parents: FloatArray, rng: np.random.Generator, scales: FloatArray
) -> FloatArray:
    """Mutations of ``parents`` with a per-row step (grouped into a few step sizes)."""
    out = np.empty_like(parents)
    bins = np.digitize(np.log(scales), np.linspace(np.log(0.005), np.log(0.3), 6))
    for b in np.unique(bins):
        rows = np.flatnonzero(bins == b)
        out[rows] = layout.mutate(parents[rows], rng, float(np.exp(np.mean(np.log(scales[rows])))))
    return out


def _polish(
    acquisition: Acquisition, layout: FeatureLayout, x0: FloatArray, iterations: int
) -> tuple[FloatArray, float]:
    """L-BFGS-B on the continuous features of ``x0`` (finite differences, batched)."""
    cont = layout.continuous
    if cont.size == 0 or iterations <= 0:
        return x0, float(acquisition(x0[None, :])[0])
    h = 1e-6
    k = cont.size
    probe = np.tile(x0, (2 * k + 1, 1))
    offsets = np.zeros((2 * k + 1, k))
    offsets[1 : k + 1] = h * np.eye(k)
    offsets[k + 1 :] = -h * np.eye(k)

    def objective(z: FloatArray) -> tuple[float, FloatArray]:
        probe[:, cont] = z[None, :] + offsets
        v = acquisition(probe)
        grad = (v[1 : k + 1] - v[k + 1 :]) / (2.0 * h)
        return -float(v[0]), -grad

    result = optimize.minimize(
        objective,
        x0[cont],
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, 1.0)] * k,
        options={"maxiter": iterations},
    )
    x = x0.copy()
    x[cont] = np.clip(result.x, 0.0, 1.0)
    return x, float(acquisition(x[None, :])[0])


def distinct_rows(x: FloatArray, existing: Sequence[FloatArray]) -> FloatArray:
    """Rows of ``x`` not equal to any row in ``existing`` (order kept)."""
    if not existing:
        return x
    ref = np.vstack(existing)
    same = np.any(np.all(np.isclose(x[:, None, :], ref[None, :, :], atol=1e-12), axis=2), axis=1)
    out: FloatArray = x[~same]
    return out

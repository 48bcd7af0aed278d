"""RANDOM_SEARCH and GRID_SEARCH against the Suggester contract, plus their own rules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources_jobs import Algorithm, ParameterSpec
from mlengine.tuning import base, random_search
from mlengine.tuning.base import Suggester, Trial, make_suggester, seen_keys
from mlengine.tuning.grid import GridSearch, grid_size
from mlengine.tuning.random_search import RandomSearch
from mlengine.tuning.space import Dimension, DimensionKind, Params, SearchSpace

DOUBLE, INTEGER = DimensionKind.DOUBLE, DimensionKind.INTEGER
DISCRETE, CATEGORICAL = DimensionKind.DISCRETE, DimensionKind.CATEGORICAL

CENSUS_PARAMS = [
    {"parameterName": "first-layer-size", "type": "INTEGER", "minValue": 50, "maxValue": 500,
     "scaleType": "UNIT_LINEAR_SCALE"},
    {"parameterName": "num-layers", "type": "INTEGER", "minValue": 1, "maxValue": 15,
     "scaleType": "UNIT_LINEAR_SCALE"},
    {"parameterName": "scale-factor", "type": "DOUBLE", "minValue": 0.1, "maxValue": 1.0,
     "scaleType": "UNIT_REVERSE_LOG_SCALE"},
]  # fmt: skip

SIX_POINTS = SearchSpace(
    [Dimension("n", INTEGER, low=1, high=3), Dimension("opt", CATEGORICAL, values=("a", "b"))]
)
MIXED = SearchSpace(
    [
        Dimension("lr", DOUBLE, low=1e-4, high=1e-1, scale="UNIT_LOG_SCALE"),
        Dimension("n", INTEGER, low=1, high=4),
        Dimension("opt", CATEGORICAL, values=("adam", "sgd")),
    ]
)


def suggest(
    suggester: Suggester,
    space: SearchSpace,
    count: int,
    history: list[Params] | None = None,
    pending: list[Params] | None = None,
    seed: int = 0,
) -> list[Params]:
    trials = [Trial(params=p, value=float(i)) for i, p in enumerate(history or [])]
    return suggester.suggest(
        space, maximize=True, history=trials, pending=pending or [], count=count, seed=seed
    )


def run_study(suggester: Suggester, space: SearchSpace, batch: int, rounds: int) -> list[Params]:
    """What a tuning service does: ask, run (no metric needed here), ask again."""
    done: list[Params] = []
    for _ in range(rounds):
        done += suggest(suggester, space, batch, history=done)
    return done


@st.composite
def small_spaces(draw: st.DrawFn) -> SearchSpace:
    """Finite spaces of at most a few hundred points, every kind and scale but DOUBLE."""
    dims = []
    for index in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from([INTEGER, DISCRETE, CATEGORICAL]))
        scale = draw(st.sampled_from(["NONE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE"]))
        size = draw(st.integers(1, 6))
        if kind is INTEGER:
            low = draw(st.integers(1, 50))
            dims.append(Dimension(f"p{index}", kind, low=low, high=low + size, scale=scale))
        elif kind is DISCRETE:
            dims.append(
                Dimension(f"p{index}", kind, scale=scale, values=tuple(2.0**k for k in range(size)))
            )
        else:
            dims.append(Dimension(f"p{index}", kind, values=tuple("abcdef"[:size])))
    return SearchSpace(dims)


# --- the contract, for both finite-space suggesters --------------------------------------


@pytest.mark.parametrize("suggester", [RandomSearch(), GridSearch()], ids=["random", "grid"])
@settings(max_examples=40, deadline=None)
@given(space=small_spaces(), data=st.data())
def test_suggestions_are_new_distinct_points_until_the_space_is_exhausted(
    suggester: Suggester, space: SearchSpace, data: st.DataObject
) -> None:
    points = list(space.points())
    history = data.draw(st.lists(st.sampled_from(points), max_size=len(points)))
    pending = data.draw(st.lists(st.sampled_from(points), max_size=3))
    count = data.draw(st.integers(0, len(points) + 2))
    seed = data.draw(st.integers(-(2**40), 2**40))
    got = suggest(suggester, space, count, history, pending, seed)

    seen = {space.key(p) for p in history + pending}
    keys = [space.key(p) for p in got]
    assert len(got) == min(count, len(points) - len(seen))
    assert len(set(keys)) == len(keys)
    assert not seen & set(keys)
    assert all(space.contains(p) for p in got)
    assert suggest(suggester, space, count, history, pending, seed) == got


@pytest.mark.parametrize("suggester", [RandomSearch(), GridSearch()], ids=["random", "grid"])
def test_a_six_point_space_is_exhausted_then_empty(suggester: Suggester) -> None:
    first = suggest(suggester, SIX_POINTS, 4)
    rest = suggest(suggester, SIX_POINTS, 4, history=first)
    assert len(first) == 4
    assert len(rest) == 2
    assert {SIX_POINTS.key(p) for p in first + rest} == {
        SIX_POINTS.key(p) for p in SIX_POINTS.points()
    }
    assert suggest(suggester, SIX_POINTS, 4, history=first, pending=rest) == []
    assert len(run_study(suggester, SIX_POINTS, batch=1, rounds=10)) == 6


def test_suggesters_implement_the_protocol() -> None:
    assert isinstance(RandomSearch(), Suggester)
    assert isinstance(GridSearch(), Suggester)


def test_points_from_another_space_block_nothing() -> None:
    stale = [{"n": 1, "opt": "rmsprop"}, {"other": 1}]
    assert seen_keys(SIX_POINTS, [Trial(params=stale[0], value=None)], stale[1:]) == set()
    assert len(suggest(GridSearch(), SIX_POINTS, 10, history=stale)) == 6


# --- random search ------------------------------------------------------------------------


def test_random_search_is_reproducible_and_continues_identically_after_a_restart() -> None:
    first = suggest(RandomSearch(), MIXED, 3, seed=11)
    assert suggest(RandomSearch(), MIXED, 3, seed=11) == first
    assert suggest(RandomSearch(), MIXED, 3, seed=12) != first
    # A restarted service passes the same history and pending and gets the same answer.
    later = suggest(RandomSearch(), MIXED, 2, history=first[:2], pending=first[2:], seed=11)
    assert later == suggest(RandomSearch(), MIXED, 2, history=first[:2], pending=first[2:], seed=11)
    assert len({MIXED.key(p) for p in first + later}) == 5


def test_random_search_samples_log_scales_per_decade() -> None:
    got = suggest(RandomSearch(), MIXED, 600, seed=3)
    decades = np.floor(np.log10([p["lr"] for p in got]))
    shares = [np.mean(decades == d) for d in (-4, -3, -2)]
    np.testing.assert_allclose(shares, 1 / 3, atol=0.07)


def test_enumerated_spaces_keep_the_sampling_distribution() -> None:
    # 100 points: enumerated, weighted by the log scale (uniform would put 9% at or below 9).
    space = SearchSpace([Dimension("n", INTEGER, low=1, high=100, scale="UNIT_LOG_SCALE")])
    low = [sum(p["n"] <= 9 for p in suggest(RandomSearch(), space, 10, seed=s)) for s in range(20)]
    assert np.mean(low) / 10 > 0.3


def test_large_finite_spaces_fall_back_to_grid_order_when_sampling_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random_search, "ENUMERATION_LIMIT", 0)
    monkeypatch.setattr(random_search, "MAX_ROUNDS", 0)
    history = list(SIX_POINTS.points())
    assert suggest(RandomSearch(), SIX_POINTS, 3, history=history[1:4]) == [
        history[0],
        history[4],
        history[5],
    ]


def test_census_space_runs_a_random_study() -> None:
    space = SearchSpace.from_spec([ParameterSpec.from_api(p) for p in CENSUS_PARAMS])
    # maxTrials 4, maxParallelTrials 2.
    first = suggest(RandomSearch(), space, 2, seed=5)
    second = suggest(RandomSearch(), space, 2, history=first, seed=5)
    trials = first + second
    assert len({space.key(p) for p in trials}) == 4
    for params in trials:
        assert space.contains(params)
        flags = space.format(params)
        assert flags["first-layer-size"].isdigit() and flags["num-layers"].isdigit()
        assert 0.1 <= float(flags["scale-factor"]) <= 1.0
        assert space.parse(flags) == params


def test_count_zero_asks_for_nothing() -> None:
    assert suggest(RandomSearch(), MIXED, 0) == []
    assert suggest(GridSearch(), SIX_POINTS, 0) == []


# --- grid search --------------------------------------------------------------------------


def test_grid_order_is_the_cartesian_product_last_parameter_fastest() -> None:
    space = SearchSpace(
        [
            Dimension("n", INTEGER, low=1, high=2),
            Dimension("opt", CATEGORICAL, values=("a", "b", "c")),
            Dimension("bs", DISCRETE, values=(0.5, 1.0)),
        ]
    )
    expected = [
        {"n": n, "opt": opt, "bs": bs}
        for n, opt, bs in itertools.product((1, 2), "abc", (0.5, 1.0))
    ]
    assert GridSearch.size(space) == grid_size(space) == 12
    assert suggest(GridSearch(), space, 20) == expected
    assert run_study(GridSearch(), space, batch=5, rounds=4) == expected


def test_grid_skips_tried_and_running_points() -> None:
    points = list(SIX_POINTS.points())
    got = suggest(GridSearch(), SIX_POINTS, 2, history=[points[0], points[2]], pending=[points[1]])
    assert got == [points[3], points[4]]


def test_grid_stops_early_on_a_huge_grid() -> None:
    space = SearchSpace([Dimension(f"p{i}", INTEGER, low=1, high=1000) for i in range(4)])
    assert GridSearch.size(space) == 10**12
    got = suggest(GridSearch(), space, 3, history=suggest(GridSearch(), space, 5))
    assert [p["p3"] for p in got] == [6, 7, 8]


def test_grid_rejects_double_parameters_naming_the_field() -> None:
    space = SearchSpace.from_spec([ParameterSpec.from_api(p) for p in CENSUS_PARAMS])
    with pytest.raises(InvalidArgument) as error:
        suggest(GridSearch(), space, 1)
    assert error.value.field == "trainingInput.hyperparameters.params[2]"
    assert "scale-factor" in error.value.message and "DISCRETE" in error.value.message
    with pytest.raises(InvalidArgument):
        GridSearch.size(space)


# --- make_suggester -----------------------------------------------------------------------


def test_make_suggester_maps_the_algorithm() -> None:
    assert isinstance(make_suggester("RANDOM_SEARCH"), RandomSearch)
    assert isinstance(make_suggester(Algorithm.GRID_SEARCH), GridSearch)
    with pytest.raises(InvalidArgument) as error:
        make_suggester("SIMULATED_ANNEALING")
    assert error.value.field == base.ALGORITHM_FIELD


@pytest.mark.parametrize("algorithm", [None, "ALGORITHM_UNSPECIFIED"])
def test_make_suggester_defaults_to_bayesian_optimisation(algorithm: str | None) -> None:
    bayesian = pytest.importorskip("mlengine.tuning.bayesian")
    suggester = make_suggester(algorithm)
    assert isinstance(suggester, bayesian.BayesianOptimizer)
    assert isinstance(suggester, Suggester)


def test_trials_are_immutable_snapshots() -> None:
    trial = Trial(params={"n": 1}, value=math.nan)
    with pytest.raises(AttributeError):
        trial.value = 1.0  # type: ignore[misc]

"""SearchSpace: the unit-cube encoding, sampling, the trainer's strings and point identity."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources_jobs import ParameterSpec
from mlengine.tuning.space import (
    Dimension,
    DimensionKind,
    Params,
    SearchSpace,
    level_probabilities,
)

DOUBLE, INTEGER = DimensionKind.DOUBLE, DimensionKind.INTEGER
DISCRETE, CATEGORICAL = DimensionKind.DISCRETE, DimensionKind.CATEGORICAL
SCALES = ["NONE", "UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE"]
LOG_SCALES = ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE")

CENSUS_PARAMS = [
    {"parameterName": "first-layer-size", "type": "INTEGER", "minValue": 50, "maxValue": 500,
     "scaleType": "UNIT_LINEAR_SCALE"},
    {"parameterName": "num-layers", "type": "INTEGER", "minValue": 1, "maxValue": 15,
     "scaleType": "UNIT_LINEAR_SCALE"},
    {"parameterName": "scale-factor", "type": "DOUBLE", "minValue": 0.1, "maxValue": 1.0,
     "scaleType": "UNIT_REVERSE_LOG_SCALE"},
]  # fmt: skip


def census_space() -> SearchSpace:
    return SearchSpace.from_spec([ParameterSpec.from_api(p) for p in CENSUS_PARAMS])


# --- strategies ---------------------------------------------------------------------------


@st.composite
def dimensions(draw: st.DrawFn, name: str) -> Dimension:
    """Any valid dimension, with ranges wide enough that float error stays far below 1e-9."""
    kind = draw(st.sampled_from(list(DimensionKind)))
    scale = draw(st.sampled_from(SCALES))
    positive = scale in LOG_SCALES
    if kind is CATEGORICAL:
        values = draw(st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True))
        return Dimension(name, kind, values=tuple(values))
    if kind is DISCRETE:
        raw = draw(st.lists(st.floats(1e-3 if positive else -1e4, 1e4), min_size=1, max_size=8))
        # Apart by 1e-3 and 6 significant digits: positions far apart on every axis.
        values = sorted({float(f"{round(v, 3):.6g}") for v in raw})
        return Dimension(name, kind, scale=scale, values=tuple(values))
    if kind is INTEGER:
        low = draw(st.integers(1 if positive else -1000, 1000))
        return Dimension(name, kind, low=low, high=low + draw(st.integers(1, 2000)), scale=scale)
    low = draw(st.floats(1e-6, 1e3) if positive else st.floats(-1e6, 1e6))
    width = draw(st.floats(1e-3, 1e6)) * max(1.0, abs(low))
    return Dimension(name, kind, low=low, high=low + width, scale=scale)


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    count = draw(st.integers(1, 4))
    return SearchSpace(draw(dimensions(f"p{i}")) for i in range(count))


def values_of(dim: Dimension) -> st.SearchStrategy[Any]:
    if dim.kind is DOUBLE:
        return st.floats(dim.low, dim.high)
    if dim.kind is INTEGER:
        return st.integers(int(dim.bounds[0]), int(dim.bounds[1]))
    return st.sampled_from(dim.values)


@st.composite
def spaces_and_points(draw: st.DrawFn) -> tuple[SearchSpace, Params]:
    space = draw(spaces())
    return space, {dim.name: draw(values_of(dim)) for dim in space.dims}


def assert_same_point(space: SearchSpace, got: Params, want: Params) -> None:
    assert got.keys() == want.keys()
    for dim in space.dims:
        if dim.kind is DOUBLE:
            low, high = dim.bounds
            tolerance = 1e-9 * (high - low) + 1e-12 * max(abs(low), abs(high))
            assert math.isclose(got[dim.name], want[dim.name], rel_tol=1e-9, abs_tol=tolerance)
        else:
            assert got[dim.name] == want[dim.name]


# --- encoding -----------------------------------------------------------------------------


@given(spaces_and_points())
def test_decode_inverts_encode(case: tuple[SearchSpace, Params]) -> None:
    space, point = case
    decoded = space.decode(space.encode(point))
    assert_same_point(space, decoded, point)
    assert space.contains(decoded)
    expected_types = {DOUBLE: float, INTEGER: int, DISCRETE: float, CATEGORICAL: str}
    assert all(type(decoded[d.name]) is expected_types[d.kind] for d in space.dims)


@given(spaces_and_points(), st.floats(-1e9, 1e9))
def test_features_lie_in_the_unit_cube(case: tuple[SearchSpace, Params], stray: float) -> None:
    space, point = case
    # Numbers outside their range are clipped, not rejected.
    numeric = [d.name for d in space.dims if d.kind in (DOUBLE, INTEGER)]
    rows = [point, {**point, **dict.fromkeys(numeric, stray)}]
    features = space.encode_many(rows)
    assert features.shape == (2, space.n_features)
    assert np.all((features >= 0.0) & (features <= 1.0))
    start = 0
    for dim in space.dims:
        if dim.kind is CATEGORICAL:
            assert features[0, start : start + dim.width].sum() == 1.0
        start += dim.width


@given(st.data())
def test_decode_of_any_vector_is_a_point_of_the_space(data: st.DataObject) -> None:
    space = data.draw(spaces())
    x = data.draw(arrays(np.float64, space.n_features, elements=st.floats(allow_nan=False)))
    point = space.decode(x)
    assert space.contains(point)
    # Decoding snaps: a decoded point decodes to itself.
    assert_same_point(space, space.decode(space.encode(point)), point)


def test_encoding_follows_the_scale_formulas() -> None:
    space = SearchSpace(
        [
            Dimension("lin", DOUBLE, low=0.0, high=10.0, scale="UNIT_LINEAR_SCALE"),
            Dimension("log", DOUBLE, low=1e-4, high=1.0, scale="UNIT_LOG_SCALE"),
            Dimension("rev", DOUBLE, low=0.1, high=1.0, scale="UNIT_REVERSE_LOG_SCALE"),
            Dimension("cat", CATEGORICAL, values=("a", "b", "c")),
        ]
    )
    features = space.encode({"lin": 2.5, "log": 1e-2, "rev": 0.1, "cat": "b"})
    np.testing.assert_allclose(features, [0.25, 0.5, 0.0, 0.0, 1.0, 0.0], atol=1e-12)
    # Reverse log: u = 1 - log-map(high + low - x); 1.1 - 0.55 = 0.55.
    expected = 1 - math.log(0.55 / 0.1) / math.log(10)
    assert space.encode({"lin": 0, "log": 1, "rev": 0.55, "cat": "c"})[2] == pytest.approx(expected)


def test_integer_and_discrete_snap_to_the_nearest_value_on_the_scaled_axis() -> None:
    space = SearchSpace(
        [
            Dimension("n", INTEGER, low=1, high=10),
            Dimension("bs", DISCRETE, values=(1, 10, 100), scale="UNIT_LOG_SCALE"),
            Dimension("bl", DISCRETE, values=(1, 10, 100)),
            Dimension("one", DISCRETE, values=(7,)),
        ]
    )
    # u=0.3 on a log axis of [1, 100] is 10**0.6 ~ 4: nearer 10 than 1 in log space, but on the
    # linear axis 0.3 is 30.7, nearer 10 than 100.
    point = space.decode([0.5, 0.3, 0.3, 0.9])
    assert point == {"n": 6, "bs": 10.0, "bl": 10.0, "one": 7.0}
    assert space.decode([0.0, 0.2, 0.6, 0.0]) == {"n": 1, "bs": 1.0, "bl": 100.0, "one": 7.0}
    assert space.encode(point)[3] == 0.5  # a one-value axis sits in the middle


def test_decode_reads_nan_as_zero_and_checks_the_shape() -> None:
    space = SearchSpace([Dimension("n", INTEGER, low=1, high=3)])
    assert space.decode([float("nan")]) == {"n": 1}
    with pytest.raises(ValueError):
        space.decode([0.5, 0.5])
    with pytest.raises(ValueError):
        space.decode_many([0.5])
    assert space.decode_many(np.zeros((0, 1))) == []


def test_encode_names_the_parameter_at_fault() -> None:
    space = SearchSpace(
        [Dimension("lr", DOUBLE, low=0, high=1), Dimension("opt", CATEGORICAL, values=("a",))]
    )
    with pytest.raises(InvalidArgument) as missing:
        space.encode({"lr": 0.5})
    with pytest.raises(InvalidArgument) as unknown:
        space.encode({"lr": 0.5, "opt": "b"})
    with pytest.raises(InvalidArgument) as not_a_number:
        space.encode({"lr": "0.5", "opt": "a"})
    assert (missing.value.field, unknown.value.field, not_a_number.value.field) == (
        "opt",
        "opt",
        "lr",
    )


# --- sampling -----------------------------------------------------------------------------


@given(spaces(), st.integers(0, 2**32))
def test_samples_are_points_of_the_space(space: SearchSpace, seed: int) -> None:
    points = space.sample(np.random.default_rng(seed), 5)
    assert len(points) == 5
    assert all(space.contains(p) for p in points)
    assert space.sample(np.random.default_rng(seed), 5) == points


def test_log_scale_samples_as_many_points_per_decade() -> None:
    space = SearchSpace([Dimension("lr", DOUBLE, low=1e-5, high=1e-1, scale="UNIT_LOG_SCALE")])
    values = np.array([p["lr"] for p in space.sample(np.random.default_rng(0), 4000)])
    per_decade = np.histogram(np.log10(values), bins=[-5, -4, -3, -2, -1])[0] / len(values)
    np.testing.assert_allclose(per_decade, 0.25, atol=0.03)


def test_reverse_log_scale_crowds_samples_near_the_top() -> None:
    space = SearchSpace([Dimension("f", DOUBLE, low=0.1, high=1.0, scale="UNIT_REVERSE_LOG_SCALE")])
    values = np.array([p["f"] for p in space.sample(np.random.default_rng(0), 4000)])
    # 1.1 - f is log-uniform on [0.1, 1]: P(f > 0.9) = log10(2) ~ 0.30 (0.11 if linear).
    assert np.mean(values > 0.9) == pytest.approx(math.log10(2), abs=0.03)
    assert np.mean(values > 0.55) == pytest.approx(math.log10(5.5), abs=0.03)


def test_integer_sampling_is_uniform_on_a_linear_scale_and_logarithmic_on_a_log_scale() -> None:
    linear = Dimension("n", INTEGER, low=1, high=4)
    np.testing.assert_allclose(level_probabilities(linear), 0.25)
    counts = np.bincount(
        [p["n"] for p in SearchSpace([linear]).sample(np.random.default_rng(1), 4000)]
    )
    np.testing.assert_allclose(counts[1:] / 4000, 0.25, atol=0.03)
    log = Dimension("n", INTEGER, low=1, high=1000, scale="UNIT_LOG_SCALE")
    probabilities = level_probabilities(log)
    assert probabilities.sum() == pytest.approx(1.0)
    # Whole decades get about the same share (1 owns the wide cell [0.5, 1.5), so the first
    # decade gets a little more).
    decades = [probabilities[lo - 1 : hi - 1].sum() for lo, hi in ((10, 100), (100, 1000))]
    assert decades == pytest.approx([0.305, 0.305], abs=0.01)


# --- strings and identity -----------------------------------------------------------------


@given(spaces_and_points())
def test_parse_inverts_format(case: tuple[SearchSpace, Params]) -> None:
    space, point = case
    strings = space.format(point)
    assert all(isinstance(s, str) for s in strings.values())
    parsed = space.parse(strings)
    assert parsed == point
    assert space.key(parsed) == space.key(point)


def test_format_writes_what_the_trainer_expects() -> None:
    space = SearchSpace(
        [
            Dimension("size", INTEGER, low=50, high=500),
            Dimension("scale", DOUBLE, low=0.0, high=1e3),
            Dimension("bs", DISCRETE, values=(0.5, 64.0, 1e20)),
            Dimension("opt", CATEGORICAL, values=("adam", "1.0")),
        ]
    )
    assert space.format_value("size", 327) == "327"
    assert space.format_value("size", 327.0) == "327"
    assert space.format_value("size", np.int64(327)) == "327"
    assert space.format_value("scale", 0.1432) == "0.1432"
    assert space.format_value("scale", np.float64(1e-5)) == "1e-05"
    assert space.format_value("scale", 2) == "2.0"
    assert [space.format_value("bs", v) for v in (0.5, 64, 1e20)] == ["0.5", "64", "1e+20"]
    assert space.format_value("opt", "1.0") == "1.0"
    assert space.parse({"size": "3.27e2", "scale": "1", "bs": "64.0", "opt": "adam"}) == {
        "size": 327,
        "scale": 1.0,
        "bs": 64.0,
        "opt": "adam",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [("size", 49), ("size", 50.5), ("size", True), ("scale", float("nan")), ("bs", 63.0),
     ("opt", "sgd"), ("opt", 1.0), ("missing", 1)],
)  # fmt: skip
def test_format_rejects_values_outside_the_space(name: str, value: Any) -> None:
    space = SearchSpace(
        [
            Dimension("size", INTEGER, low=50, high=500),
            Dimension("scale", DOUBLE, low=0.0, high=1.0),
            Dimension("bs", DISCRETE, values=(64.0,)),
            Dimension("opt", CATEGORICAL, values=("adam",)),
        ]
    )
    with pytest.raises(InvalidArgument) as error:
        space.format_value(name, value)
    assert error.value.field == name
    assert name in error.value.message


@pytest.mark.parametrize(
    ("strings", "field"),
    [({"n": "abc", "c": "a"}, "n"), ({"n": "2.5", "c": "a"}, "n"), ({"n": "99", "c": "a"}, "n"),
     ({"n": "nan", "c": "a"}, "n"), ({"n": "2", "c": "z"}, "c"), ({"n": "2"}, "c")],
)  # fmt: skip
def test_parse_names_the_parameter_on_garbage(strings: dict[str, str], field: str) -> None:
    space = SearchSpace(
        [Dimension("n", INTEGER, low=1, high=3), Dimension("c", CATEGORICAL, values=("a",))]
    )
    with pytest.raises(InvalidArgument) as error:
        space.parse(strings)
    assert error.value.field == field
    assert repr(field) in error.value.message


def test_key_is_the_identity_after_snapping() -> None:
    space = SearchSpace(
        [
            Dimension("lr", DOUBLE, low=0.0, high=1.0),
            Dimension("n", INTEGER, low=1, high=10),
            Dimension("bs", DISCRETE, values=(16, 32, 64), scale="UNIT_LOG_SCALE"),
            Dimension("opt", CATEGORICAL, values=("adam", "sgd")),
        ]
    )
    key = space.key({"lr": 0.1, "n": 3, "bs": 32.0, "opt": "adam"})
    assert key == (0.1, 3, 32.0, "adam")
    same = {"lr": 0.1 + 1e-15, "n": np.int64(3), "bs": 31.0, "opt": "adam", "extra": 1}
    assert space.key(same) == key
    assert space.key({"lr": 0.1 + 1e-9, "n": 3, "bs": 32, "opt": "adam"}) != key
    assert space.key({"lr": 5.0, "n": 30, "bs": 1000, "opt": "sgd"}) == (1.0, 10, 64.0, "sgd")
    assert len({key, space.key(same)}) == 1
    with pytest.raises(InvalidArgument):
        space.key({"lr": 0.1, "n": 3, "bs": 32.0, "opt": "rmsprop"})


@given(spaces_and_points())
def test_keys_survive_the_encoding_for_finite_dimensions(case: tuple[SearchSpace, Params]) -> None:
    space, point = case
    finite = SearchSpace(d for d in space.dims if d.kind is not DOUBLE)
    assert finite.key(finite.decode(finite.encode(point))) == finite.key(point)


def test_contains_checks_names_types_and_ranges() -> None:
    space = SearchSpace(
        [Dimension("n", INTEGER, low=1, high=3), Dimension("c", CATEGORICAL, values=("a",))]
    )
    assert space.contains({"n": 2, "c": "a"})
    assert space.contains({"n": 2.0, "c": "a", "other": "ignored"})
    assert not space.contains({"n": 2})
    assert not space.contains({"n": 2.5, "c": "a"})
    assert not space.contains({"n": 4, "c": "a"})
    assert not space.contains({"n": True, "c": "a"})
    assert not space.contains({"n": 2, "c": "b"})


# --- construction -------------------------------------------------------------------------


def test_census_parameters_make_a_space() -> None:
    space = census_space()
    assert space.names == ("first-layer-size", "num-layers", "scale-factor")
    assert [d.kind for d in space.dims] == [INTEGER, INTEGER, DOUBLE]
    assert space.dims[2].scale == "UNIT_REVERSE_LOG_SCALE"
    assert space.n_features == 3
    assert space.cardinality is None
    low = {"first-layer-size": 50, "num-layers": 1, "scale-factor": 0.1}
    high = {"first-layer-size": 500, "num-layers": 15, "scale-factor": 1.0}
    np.testing.assert_allclose(space.encode_many([low, high]), [[0, 0, 0], [1, 1, 1]])
    assert space.format({"first-layer-size": 327, "num-layers": 3, "scale-factor": 0.42}) == {
        "first-layer-size": "327",
        "num-layers": "3",
        "scale-factor": "0.42",
    }
    for point in space.sample(np.random.default_rng(7), 50):
        assert space.parse(space.format(point)) == point


def test_from_spec_keeps_every_kind() -> None:
    specs = [
        {"parameterName": "opt", "type": "CATEGORICAL", "categoricalValues": ["adam", "sgd"]},
        {"parameterName": "bs", "type": "DISCRETE", "discreteValues": [16, 32],
         "minValue": 0, "scaleType": "UNIT_LOG_SCALE"},
        {"parameterName": "lr", "type": "DOUBLE", "minValue": 1e-4, "maxValue": 0.1},
    ]  # fmt: skip
    space = SearchSpace.from_spec([ParameterSpec.from_api(s) for s in specs])
    assert space.dims == (
        Dimension("opt", CATEGORICAL, values=("adam", "sgd")),
        Dimension("bs", DISCRETE, scale="UNIT_LOG_SCALE", values=(16.0, 32.0)),
        Dimension("lr", DOUBLE, low=1e-4, high=0.1, scale="NONE"),
    )
    assert (space.n_features, [d.width for d in space.dims]) == (4, [2, 1, 1])
    assert [d.cardinality for d in space.dims] == [2, 2, None]
    assert space == SearchSpace(space.dims) and hash(space) == hash(SearchSpace(space.dims))


@pytest.mark.parametrize(
    "fields",
    [{"kind": DOUBLE}, {"kind": DOUBLE, "low": 2, "high": 1}, {"kind": INTEGER, "low": 0.5,
     "high": 3}, {"kind": DOUBLE, "low": 0, "high": 1, "scale": "UNIT_LOG_SCALE"},
     {"kind": DOUBLE, "low": 0, "high": 1, "scale": "SQUARE"}, {"kind": DISCRETE},
     {"kind": DISCRETE, "values": (2.0, 1.0)}, {"kind": DISCRETE, "values": ("a",)},
     {"kind": CATEGORICAL, "values": ("a", "a")}, {"kind": "NOPE"}],
)  # fmt: skip
def test_inconsistent_dimensions_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Dimension("x", **fields)


def test_dimension_names_are_unique() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        SearchSpace([Dimension("x", INTEGER, low=1, high=2)] * 2)


def test_points_enumerate_the_grid_last_dimension_fastest() -> None:
    space = SearchSpace(
        [Dimension("n", INTEGER, low=1, high=2), Dimension("c", CATEGORICAL, values=("a", "b"))]
    )
    assert list(space.points()) == [
        {"n": 1, "c": "a"},
        {"n": 1, "c": "b"},
        {"n": 2, "c": "a"},
        {"n": 2, "c": "b"},
    ]
    assert space.cardinality == 4
    with pytest.raises(ValueError):
        list(SearchSpace([Dimension("x", DOUBLE, low=0, high=1)]).points())

"""The search space of a tuning job and its encoding as points of the unit cube.

A :class:`SearchSpace` is built from the validated ``params`` of a HyperparameterSpec
(:meth:`SearchSpace.from_spec`) and translates between three forms of one parameter set:

* **Python values** (:data:`Params`): DOUBLE ``float``, INTEGER ``int``, DISCRETE ``float``
  (one of ``discreteValues``), CATEGORICAL ``str``.
* **Features** (:meth:`~SearchSpace.encode` / :meth:`~SearchSpace.decode`): a vector in
  ``[0, 1]^n_features`` that optimisers work in.  Numeric dimensions take one feature, their
  position on the scaled axis; a CATEGORICAL dimension takes one feature per category (one-hot).
* **Strings** (:meth:`~SearchSpace.format` / :meth:`~SearchSpace.parse`): what the trainer
  receives as ``--<name>=<value>`` and ``trainingOutput.trials[].hyperparameters`` shows.

Scaled axis of a numeric dimension with bounds ``[lo, hi]`` (for DISCRETE: the first and last
value), ``u`` in ``[0, 1]``:

==========================  ================================================================
NONE, UNIT_LINEAR_SCALE     ``u = (x - lo) / (hi - lo)``
UNIT_LOG_SCALE              ``u = (ln x - ln lo) / (ln hi - ln lo)``
UNIT_REVERSE_LOG_SCALE      ``u = 1 - (ln(hi + lo - x) - ln lo) / (ln hi - ln lo)``
==========================  ================================================================

The reverse-log map mirrors the log map (``x -> hi + lo - x``), so uniform ``u`` gives as
many points per decade of *distance below hi* and crowds them near the top of the range.  A
dimension with one value (``lo == hi``) sits at ``u = 0.5``.

Every method that takes a parameter set reads the space's names and ignores other keys.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, SupportsFloat, TypeGuard

import numpy as np
import numpy.typing as npt

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources_jobs import ParameterSpec, ParameterType, ScaleType

FloatArray = npt.NDArray[np.float64]
#: One parameter set as Python values: DOUBLE float, INTEGER int, DISCRETE float, CATEGORICAL str.
Params = dict[str, float | int | str]
#: The canonical identity of a parameter set (see :meth:`SearchSpace.key`).
Key = tuple[float | int | str, ...]

LOG_SCALE = ScaleType.UNIT_LOG_SCALE.value
REVERSE_LOG_SCALE = ScaleType.UNIT_REVERSE_LOG_SCALE.value
_SCALES = frozenset(scale.value for scale in ScaleType)
#: Significant digits of a DOUBLE in :meth:`SearchSpace.key`.
KEY_DIGITS = 12
#: Whole DISCRETE values below this magnitude are formatted without a decimal point.
_WHOLE_LIMIT = 2.0**53


class DimensionKind(StrEnum):
    """The kind of one dimension; the ParameterSpec ``type`` it came from."""

    DOUBLE = "DOUBLE"
    INTEGER = "INTEGER"
    DISCRETE = "DISCRETE"
    CATEGORICAL = "CATEGORICAL"


@dataclass(frozen=True)
class Dimension:
    """One tuned parameter.

    DOUBLE and INTEGER use ``low``/``high`` (original units, inclusive; INTEGER bounds are
    whole); DISCRETE uses ``values`` (strictly increasing floats) and CATEGORICAL ``values``
    (distinct strings).  ``scale`` is a ScaleType name; CATEGORICAL ignores it.  Raises
    ValueError when the fields do not make a dimension.
    """

    name: str
    kind: DimensionKind
    low: float | None = None
    high: float | None = None
    scale: str = "NONE"
    values: tuple[float | str, ...] = ()

    def __post_init__(self) -> None:
        # Normalise ints given for floats, so that values come back as the documented types.
        object.__setattr__(self, "kind", DimensionKind(self.kind))
        for bound in ("low", "high"):
            if _is_number(getattr(self, bound)):
                object.__setattr__(self, bound, float(getattr(self, bound)))
        problem = _dimension_problem(self)
        if problem:
            raise ValueError(f"Dimension {self.name!r}: {problem}")
        if self.kind is DimensionKind.DISCRETE:
            object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    @property
    def width(self) -> int:
        """Features this dimension takes in the encoding: one per category, else 1."""
        return len(self.values) if self.kind is DimensionKind.CATEGORICAL else 1

    @property
    def cardinality(self) -> int | None:
        """The number of distinct values; None for DOUBLE (a continuum)."""
        if self.kind is DimensionKind.DOUBLE:
            return None
        if self.kind is DimensionKind.INTEGER:
            low, high = self.bounds
            return int(high) - int(low) + 1
        return len(self.values)

    @property
    def bounds(self) -> tuple[float, float]:
        """The ends of the numeric axis: ``(low, high)``, or the first and last DISCRETE value."""
        if self.kind is DimensionKind.DISCRETE:
            return float(self.values[0]), float(self.values[-1])
        if self.low is None or self.high is None:
            raise ValueError(f"{self.kind} dimension {self.name!r} has no numeric axis")
        return self.low, self.high

    @property
    def levels(self) -> Sequence[float | int | str]:
        """Every value in increasing order (categories in spec order); ValueError for DOUBLE."""
        if self.kind is DimensionKind.DOUBLE:
            raise ValueError(f"DOUBLE dimension {self.name!r} has no finite set of values")
        if self.kind is DimensionKind.INTEGER:
            low, high = self.bounds
            return range(int(low), int(high) + 1)
        return self.values


def _dimension_problem(dim: Dimension) -> str | None:
    if dim.scale not in _SCALES:
        return f"unknown scale {dim.scale!r}"
    if dim.kind in (DimensionKind.DOUBLE, DimensionKind.INTEGER):
        if dim.low is None or dim.high is None or not math.isfinite(dim.high - dim.low):
            return "needs finite low and high"
        if dim.low > dim.high:
            return "needs low <= high"
        if dim.kind is DimensionKind.INTEGER and not (
            dim.low.is_integer() and dim.high.is_integer()
        ):
            return "INTEGER bounds must be whole numbers"
        ends = [dim.low, dim.high]
    elif not dim.values:
        return f"{dim.kind} needs at least one value"
    elif dim.kind is DimensionKind.CATEGORICAL:
        ok = all(isinstance(v, str) for v in dim.values) and len(set(dim.values)) == len(dim.values)
        return None if ok else "categories must be distinct strings"
    else:
        floats = [float(v) for v in dim.values if _is_number(v) and math.isfinite(float(v))]
        if len(floats) < len(dim.values) or any(a >= b for a, b in itertools.pairwise(floats)):
            return "DISCRETE values must be finite, strictly increasing numbers"
        ends = [floats[0], floats[-1]]
    if dim.scale in (LOG_SCALE, REVERSE_LOG_SCALE) and ends[0] <= 0:
        return f"{dim.scale} needs values above 0"
    return None


def _is_number(value: object) -> TypeGuard[SupportsFloat]:
    """Real numbers, numpy scalars included; booleans are not numbers here."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


# --- the scaled axis ---------------------------------------------------------------------


def to_unit(scale: str, low: float, high: float, x: FloatArray) -> FloatArray:
    """Positions of ``x`` (within ``[low, high]``) on the scaled axis (module docstring)."""
    if high <= low:
        return np.full_like(x, 0.5)
    if scale == LOG_SCALE:
        u = (np.log(x) - math.log(low)) / (math.log(high) - math.log(low))
    elif scale == REVERSE_LOG_SCALE:
        u = 1.0 - (np.log(high + low - x) - math.log(low)) / (math.log(high) - math.log(low))
    else:
        u = (x - low) / (high - low)
    return np.asarray(u, dtype=np.float64)


def from_unit(scale: str, low: float, high: float, u: FloatArray) -> FloatArray:
    """Inverse of :func:`to_unit` for ``u`` in ``[0, 1]``."""
    if high <= low:
        return np.full_like(u, low)
    if scale == LOG_SCALE:
        x = np.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    elif scale == REVERSE_LOG_SCALE:
        x = high + low - np.exp(math.log(low) + (1.0 - u) * (math.log(high) - math.log(low)))
    else:
        x = low + u * (high - low)
    return np.asarray(x, dtype=np.float64)


def level_probabilities(dim: Dimension) -> FloatArray:
    """The probability that :meth:`SearchSpace.sample` draws each of ``dim.levels``.

    INTEGER values own the cells ``[k - 1/2, k + 1/2]`` of the scaled axis stretched to
    ``[low - 1/2, high + 1/2]`` (uniform on a linear scale); DISCRETE and CATEGORICAL values
    are equally likely.
    """
    if dim.kind is not DimensionKind.INTEGER:
        count = len(dim.levels)
        return np.full(count, 1.0 / count)
    low, high = dim.bounds
    edges = low - 0.5 + np.arange(int(high) - int(low) + 2, dtype=np.float64)
    return np.diff(np.clip(to_unit(dim.scale, low - 0.5, high + 0.5, edges), 0.0, 1.0))


# --- one dimension's column: encode, decode, sample ----------------------------------------


def _number(dim: Dimension, value: object) -> float:
    if not _is_number(value) or not math.isfinite(float(value)):
        raise InvalidArgument(
            f"Hyperparameter {dim.name!r} needs a finite number, got {value!r}.", field=dim.name
        )
    return float(value)


def _category_index(dim: Dimension, value: object) -> int:
    if isinstance(value, str) and value in dim.values:
        return dim.values.index(value)
    raise InvalidArgument(
        f"Hyperparameter {dim.name!r} has value {value!r}; expected one of {list(dim.values)}.",
        field=dim.name,
    )


def _encode_column(dim: Dimension, column: Sequence[object]) -> FloatArray:
    """``[len(column), dim.width]`` features of ``column``; numbers are clipped into range."""
    if dim.kind is DimensionKind.CATEGORICAL:
        block = np.zeros((len(column), dim.width))
        block[np.arange(len(column)), [_category_index(dim, v) for v in column]] = 1.0
        return block
    low, high = dim.bounds
    x = np.clip(np.array([_number(dim, v) for v in column], dtype=np.float64), low, high)
    return np.clip(to_unit(dim.scale, low, high, x), 0.0, 1.0).reshape(-1, 1)


def _nearest_discrete(dim: Dimension, u: FloatArray) -> list[float | int | str]:
    """The DISCRETE values nearest to positions ``u`` on the scaled axis (ties: the lower)."""
    low, high = dim.bounds
    positions = to_unit(dim.scale, low, high, np.array(dim.values, dtype=np.float64))
    right = np.clip(np.searchsorted(positions, u), 0, len(positions) - 1)
    left = np.clip(right - 1, 0, len(positions) - 1)
    pick = np.where(np.abs(u - positions[left]) <= np.abs(positions[right] - u), left, right)
    return [dim.values[int(i)] for i in pick]


def _decode_column(dim: Dimension, block: FloatArray) -> list[float | int | str]:
    """Python values of ``block`` (``[n, dim.width]``, already clipped to ``[0, 1]``)."""
    if dim.kind is DimensionKind.CATEGORICAL:
        return [dim.values[int(i)] for i in np.argmax(block, axis=1)]
    u = block[:, 0]
    if dim.kind is DimensionKind.DISCRETE:
        return _nearest_discrete(dim, u)
    low, high = dim.bounds
    x = from_unit(dim.scale, low, high, u)
    if dim.kind is DimensionKind.INTEGER:
        return [int(k) for k in np.clip(np.rint(x), low, high)]
    return [float(v) for v in np.clip(x, low, high)]


def _sample_column(dim: Dimension, rng: np.random.Generator, n: int) -> list[float | int | str]:
    """``n`` draws: DOUBLE uniform on the scaled axis, INTEGER as in level_probabilities."""
    if dim.kind in (DimensionKind.DISCRETE, DimensionKind.CATEGORICAL):
        return [dim.values[int(i)] for i in rng.integers(0, len(dim.values), size=n)]
    low, high = dim.bounds
    if dim.kind is DimensionKind.DOUBLE:
        return [
            float(v) for v in np.clip(from_unit(dim.scale, low, high, rng.random(n)), low, high)
        ]
    x = from_unit(dim.scale, low - 0.5, high + 0.5, rng.random(n))
    return [int(k) for k in np.clip(np.rint(x), low, high)]


# --- one value: identity, strings ---------------------------------------------------------


def _snap(dim: Dimension, value: object) -> float | int | str:
    """The value ``decode`` would give for ``value``; DOUBLE rounded to KEY_DIGITS digits."""
    if dim.kind is DimensionKind.CATEGORICAL:
        return dim.values[_category_index(dim, value)]
    low, high = dim.bounds
    x = min(max(_number(dim, value), low), high)
    if dim.kind is DimensionKind.DOUBLE:
        return float(f"{x:.{KEY_DIGITS}g}")
    if dim.kind is DimensionKind.INTEGER:
        return int(np.rint(x))
    return _nearest_discrete(dim, to_unit(dim.scale, low, high, np.array([x])))[0]


def _member(dim: Dimension, value: object) -> float | int | str | None:
    """``value`` as the Python type of ``dim`` if it is exactly one of its values, else None."""
    if dim.kind is DimensionKind.CATEGORICAL:
        return value if isinstance(value, str) and value in dim.values else None
    if not _is_number(value) or not math.isfinite(x := float(value)):
        return None
    if dim.kind is DimensionKind.DISCRETE:
        return dim.values[dim.values.index(x)] if x in dim.values else None
    low, high = dim.bounds
    if not low <= x <= high:
        return None
    if dim.kind is DimensionKind.INTEGER:
        return int(x) if x.is_integer() else None
    return x


def _describe(dim: Dimension) -> str:
    """What the values of ``dim`` are, to end "which is not ..." in errors."""
    if dim.kind in (DimensionKind.DISCRETE, DimensionKind.CATEGORICAL):
        return f"one of {list(dim.values)}"
    low, high = dim.bounds
    whole = "whole " if dim.kind is DimensionKind.INTEGER else ""
    return f"a {whole}number between {low:g} and {high:g}"


def _not_a_value(dim: Dimension, shown: object) -> InvalidArgument:
    return InvalidArgument(
        f"Hyperparameter {dim.name!r} has value {shown!r}, which is not {_describe(dim)}.",
        field=dim.name,
    )


def _format_member(dim: Dimension, value: float | int | str) -> str:
    if isinstance(value, str | int):
        return str(value)
    if dim.kind is DimensionKind.DISCRETE and value.is_integer() and abs(value) < _WHOLE_LIMIT:
        return str(int(value))
    return repr(value)


def _parse_text(dim: Dimension, text: str) -> float | int | str:
    candidate: object = text
    if dim.kind is not DimensionKind.CATEGORICAL:
        try:
            candidate = float(text)
        except ValueError:
            raise _not_a_value(dim, text) from None
    if dim.kind is DimensionKind.DISCRETE:
        # Strings may have been re-typed with fewer digits: accept a near-exact value.
        near = [v for v in dim.values if math.isclose(float(v), float(text), rel_tol=1e-12)]
        candidate = near[0] if near else candidate
    member = _member(dim, candidate)
    if member is None:
        raise _not_a_value(dim, text)
    return member


# --- the space ----------------------------------------------------------------------------


class SearchSpace:
    """The ordered dimensions of one tuning job; immutable and safe to share.

    Names are unique (ValueError otherwise).  Features are laid out in dimension order.
    Spaces with equal dimensions are equal.
    """

    __slots__ = ("_by_name", "dims")

    def __init__(self, dims: Iterable[Dimension]) -> None:
        self.dims: tuple[Dimension, ...] = tuple(dims)
        self._by_name = {dim.name: index for index, dim in enumerate(self.dims)}
        if len(self._by_name) != len(self.dims):
            raise ValueError(f"duplicate dimension names in {[d.name for d in self.dims]}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and other.dims == self.dims

    def __hash__(self) -> int:
        return hash(self.dims)

    def __repr__(self) -> str:
        return f"SearchSpace({list(self.dims)!r})"

    @classmethod
    def from_spec(cls, params: Sequence[ParameterSpec]) -> SearchSpace:
        """The space of validated ParameterSpecs, in their order (scaleType unset = NONE)."""
        return cls(_dimension_from_spec(spec) for spec in params)

    @property
    def names(self) -> tuple[str, ...]:
        """Dimension names in order."""
        return tuple(dim.name for dim in self.dims)

    @property
    def n_features(self) -> int:
        """The length of an encoded point: the sum of the dimensions' widths."""
        return sum(dim.width for dim in self.dims)

    @property
    def cardinality(self) -> int | None:
        """The number of distinct points; None when a DOUBLE dimension makes it infinite."""
        sizes = [dim.cardinality for dim in self.dims]
        return None if None in sizes else math.prod(s for s in sizes if s is not None)

    def dimension(self, name: str) -> Dimension:
        """The dimension called ``name``; InvalidArgument if there is none."""
        if name not in self._by_name:
            raise InvalidArgument(
                f"{name!r} is not a tuned hyperparameter; expected one of {list(self.names)}.",
                field=name,
            )
        return self.dims[self._by_name[name]]

    def encode(self, params: Mapping[str, Any]) -> FloatArray:
        """Features of one parameter set, each in ``[0, 1]`` (see the module docstring).

        Numbers outside a dimension's range are clipped to it; a missing name or an unknown
        category raises InvalidArgument naming the parameter.
        """
        features: FloatArray = self.encode_many([params])[0]
        return features

    def encode_many(self, rows: Sequence[Mapping[str, Any]]) -> FloatArray:
        """``[len(rows), n_features]`` features of many parameter sets (as :meth:`encode`)."""
        blocks = [_encode_column(dim, [_lookup(dim, row) for row in rows]) for dim in self.dims]
        if not blocks:
            return np.zeros((len(rows), 0))
        return np.hstack(blocks)

    def decode(self, x: npt.ArrayLike) -> Params:
        """The point of the space nearest to features ``x`` (any real vector of n_features).

        ``x`` is clipped to ``[0, 1]`` (NaN read as 0) and each dimension snapped: DOUBLE by
        the inverse scale, INTEGER to the nearest whole number after it, DISCRETE to the value
        nearest on the scaled axis, CATEGORICAL to the largest feature (ties: the first).
        """
        matrix = np.asarray(x, dtype=np.float64)
        if matrix.shape != (self.n_features,):
            raise ValueError(f"expected {self.n_features} features, got shape {matrix.shape}")
        return self.decode_many(matrix.reshape(1, -1))[0]

    def decode_many(self, x: npt.ArrayLike) -> list[Params]:
        """:meth:`decode` of every row of an ``[n, n_features]`` array."""
        matrix = np.asarray(x, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ValueError(f"expected [n, {self.n_features}] features, got {matrix.shape}")
        matrix = np.clip(np.nan_to_num(matrix, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        rows: list[Params] = [{} for _ in range(matrix.shape[0])]
        start = 0
        for dim in self.dims:
            column = _decode_column(dim, matrix[:, start : start + dim.width])
            for row, value in zip(rows, column, strict=True):
                row[dim.name] = value
            start += dim.width
        return rows

    def sample(self, rng: np.random.Generator, n: int) -> list[Params]:
        """``n`` independent random points, drawn dimension by dimension from ``rng``.

        DOUBLE is uniform on the scaled axis (a log scale gets as many points per decade);
        INTEGER as :func:`level_probabilities` says (uniform on a linear scale); DISCRETE and
        CATEGORICAL uniform over their values.
        """
        rows: list[Params] = [{} for _ in range(n)]
        for dim in self.dims:
            for row, value in zip(rows, _sample_column(dim, rng, n), strict=True):
                row[dim.name] = value
        return rows

    def points(self) -> Iterator[Params]:
        """Every point, lazily, as the cartesian product in dimension order (last fastest).

        ValueError when a DOUBLE dimension makes the space infinite.
        """
        for combo in itertools.product(*(dim.levels for dim in self.dims)):
            yield dict(zip(self.names, combo, strict=True))

    def format_value(self, name: str, value: Any) -> str:
        """The string the trainer receives for ``value`` of parameter ``name``.

        INTEGER ``"327"``; DOUBLE the shortest string that reads back as the same float
        (``repr``: ``"0.1432"``, ``"1e-05"``, ``"1.0"``); DISCRETE likewise, but whole values
        without a decimal point (``64.0`` -> ``"64"``, so ``type=int`` flags work); CATEGORICAL
        the raw string.  InvalidArgument unless ``value`` is a value of the parameter.
        """
        dim = self.dimension(name)
        member = _member(dim, value)
        if member is None:
            raise _not_a_value(dim, value)
        return _format_member(dim, member)

    def format(self, params: Mapping[str, Any]) -> dict[str, str]:
        """:meth:`format_value` of every dimension, in dimension order."""
        return {dim.name: self.format_value(dim.name, _lookup(dim, params)) for dim in self.dims}

    def parse(self, strings: Mapping[str, str]) -> Params:
        """The inverse of :meth:`format`: Python values from stored strings.

        Accepts any number spelling (``"64"``, ``"64.0"``, ``"6.4e1"``) that denotes a value
        of the parameter; InvalidArgument (``field`` = the parameter name) otherwise.
        """
        return {dim.name: _parse_text(dim, str(_lookup(dim, strings))) for dim in self.dims}

    def key(self, params: Mapping[str, Any]) -> Key:
        """A hashable identity: equal keys mean the same trial for the trainer.

        Values in dimension order after the snapping of :meth:`decode` (INTEGER rounded,
        DISCRETE nearest value, numbers clipped into range); DOUBLE rounded to
        :data:`KEY_DIGITS` significant digits.  InvalidArgument on a missing name, a
        non-number or an unknown category.
        """
        return tuple(_snap(dim, _lookup(dim, params)) for dim in self.dims)

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` names every dimension with one of its values (exactly)."""
        return all(
            dim.name in params and _member(dim, params[dim.name]) is not None for dim in self.dims
        )


def _lookup(dim: Dimension, params: Mapping[str, Any]) -> Any:
    if dim.name not in params:
        raise InvalidArgument(
            f"Hyperparameter {dim.name!r} is missing from {dict(params)!r}.", field=dim.name
        )
    return params[dim.name]


def _dimension_from_spec(spec: ParameterSpec) -> Dimension:
    name = spec.parameter_name or ""
    if spec.type in (None, ParameterType.PARAMETER_TYPE_UNSPECIFIED):
        raise InvalidArgument(f"Hyperparameter {name!r} has no type.", field=name)
    kind = DimensionKind(spec.type)
    if kind is DimensionKind.CATEGORICAL:
        return Dimension(name, kind, values=tuple(spec.categorical_values or ()))
    if kind is DimensionKind.DISCRETE:  # minValue and maxValue are ignored
        values = tuple(spec.discrete_values or ())
        return Dimension(name, kind, scale=_scale_name(spec), values=values)
    return Dimension(name, kind, low=spec.min_value, high=spec.max_value, scale=_scale_name(spec))


def _scale_name(spec: ParameterSpec) -> str:
    return (spec.scale_type or ScaleType.NONE).value

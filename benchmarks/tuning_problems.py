"""The fixed problem suite of ``benchmarks/tuning.py`` and its random-search reference.

Every problem is *minimised* and is a list of CMLE ``ParameterSpec`` plus an objective that
takes the parameter dict an optimiser suggested (python values: DOUBLE float, INTEGER int,
DISCRETE float, CATEGORICAL str) and returns the reported value, or None for a failed trial.
Regret is always measured on the noiseless function at the trial the study would report as
best (lowest reported value), against the known optimum ``optimum`` (census: the best value
seen across all runs, because its optimum is unknown).

    problem            params                                             optimum
    branin             2 DOUBLE                                           0.397887 (3 minima)
    hartmann6          6 DOUBLE in [0, 1]                                 -3.32237
    mixed              lr log, dropout, layers, act (4), batch log-INT    0 (HPT_NOTES "mixed")
    mixed_all          mixed + momentum DISCRETE reverse-log              0
    logscale           Rosenbrock-3 in log10 coordinates, optimum at      0
                       the low end of two log scales and the top of a
                       reverse-log scale
    noisy_hartmann6    hartmann6 + N(0, 0.1²) on the reported value       -3.32237
    crash_hartmann6    hartmann6 failing where x1 > 0.6 and x2 < 0.4      -3.32237
    bbob_f{2,7,15,21}  BBOB (ioh) instance 1, 10-D, [-5, 5]^10            ioh's optimum.y
    census             HistGradientBoosting on census, holdout error       best seen (opt-in)

The uniform random-search reference of each problem (the denominator of normalised
regret) lives in ``tuning_report.py``.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.domain.resources import ParameterSpec

Params = dict[str, Any]
Objective = Callable[[Params], float]

REPO = Path(__file__).resolve().parents[1]
CENSUS_DATA = REPO.parent / "shared" / "data" / "census" / "adult.data"
CENSUS_TRAINER = REPO / "examples" / "census" / "sklearn"

#: Bumped whenever a definition changes, so cached random references are recomputed.
DEFINITIONS_VERSION = 1
NOISE_SD = 0.1
CRASH_X1_ABOVE, CRASH_X2_BELOW = 0.6, 0.4
BBOB_FUNCTIONS = (2, 7, 15, 21)
BBOB_DIMENSION = 10


@dataclass(frozen=True)
class Problem:
    """One benchmark problem (minimised); see the module docstring for the suite."""

    name: str
    description: str
    specs: tuple[ParameterSpec, ...]
    function: Objective  # the noiseless value; regret is measured on it
    optimum: float | None  # None: the best value seen across all runs (census)
    noise_sd: float = 0.0
    fails: Callable[[Params], bool] | None = None
    default_seeds: int = 10
    tags: tuple[str, ...] = field(default_factory=tuple)

    def objective(self, params: Params, rng: np.random.Generator) -> float | None:
        """The value the trial reports: None where it crashes, noisy where ``noise_sd`` > 0."""
        return self.evaluate(params, rng)[0]

    def evaluate(
        self, params: Params, rng: np.random.Generator
    ) -> tuple[float | None, float | None]:
        """``(reported, true)``; both None for a failed trial."""
        if self.fails is not None and self.fails(params):
            return None, None
        true = float(self.function(params))
        reported = true + float(rng.normal(0.0, self.noise_sd)) if self.noise_sd else true
        return reported, true


# --- parameter specs ---------------------------------------------------------------------


def _spec(**fields: Any) -> ParameterSpec:
    return ParameterSpec.from_api(fields)  # the camelCase wire form, validated


def double(name: str, low: float, high: float, scale: str = "UNIT_LINEAR_SCALE") -> ParameterSpec:
    return _spec(parameterName=name, type="DOUBLE", minValue=low, maxValue=high, scaleType=scale)


def integer(name: str, low: int, high: int, scale: str = "UNIT_LINEAR_SCALE") -> ParameterSpec:
    return _spec(parameterName=name, type="INTEGER", minValue=low, maxValue=high, scaleType=scale)


def categorical(name: str, values: Sequence[str]) -> ParameterSpec:
    return _spec(parameterName=name, type="CATEGORICAL", categoricalValues=list(values))


def discrete(name: str, values: Sequence[float], scale: str = "UNIT_LINEAR_SCALE") -> ParameterSpec:
    return _spec(parameterName=name, type="DISCRETE", discreteValues=list(values), scaleType=scale)


# --- closed-form functions ---------------------------------------------------------------

BRANIN_OPTIMUM = 0.397887357729739
BRANIN_MINIMISERS = ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475))


def branin(x1: float, x2: float) -> float:
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


HARTMANN6_OPTIMUM = -3.32236801141551
HARTMANN6_MINIMISER = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(x: Sequence[float]) -> float:
    inner = (_H6_A * (np.asarray(x, dtype=float) - _H6_P) ** 2).sum(axis=1)
    return float(-(_H6_ALPHA * np.exp(-inner)).sum())


#: activation → (optimal log10 lr at its best depth, best depth, offset); HPT_NOTES §4.2.
MIXED_ACTIVATIONS = {
    "relu": (-2.2, 4, 0.0),
    "tanh": (-1.7, 6, 0.25),
    "sigmoid": (-3.5, 2, 0.6),
    "gelu": (-2.6, 5, 0.08),
}
MIXED_OPTIMUM_PARAMS: Params = {
    "lr": 10**-2.2,
    "dropout": 0.2,
    "layers": 4,
    "act": "relu",
    "batch": 200,
    "momentum": 0.95,
}
MOMENTUM_VALUES = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)


def mixed(p: Params) -> float:
    """The "mixed" problem of HPT_NOTES.md / hpt_reference_traces.jsonl, term for term."""
    slope_lr, depth, offset = MIXED_ACTIVATIONS[p["act"]]
    d = p["layers"] - depth
    drop = p["dropout"] - 0.2
    return (
        offset
        + 0.5 * (math.log10(p["lr"]) - slope_lr - 0.1 * d) ** 2
        + 0.04 * d**2
        + 3 * drop**2
        + 0.1 * (1 - math.cos(2 * math.pi * drop / 0.25))
        + 0.3 * (math.log2(p["batch"]) - math.log2(200)) ** 2 / 9
    )


def mixed_all(p: Params) -> float:
    """``mixed`` plus a momentum term, smooth in log10(1 − momentum), zero at 0.95."""
    return mixed(p) + 0.5 * (math.log10(1 - p["momentum"]) - math.log10(0.05)) ** 2


LOGSCALE_OPTIMUM_PARAMS: Params = {"lr": 1e-5, "l2": 10**-7.5, "decay": 0.998}


def logscale(p: Params) -> float:
    """Rosenbrock-3 (minimum 0 at v = 1) of log10 coordinates; optima near the log ends."""
    v = (
        1 + (math.log10(p["lr"]) + 5) / 2,
        1 + (math.log10(p["l2"]) + 7.5) / 2,
        1 + (math.log10(1.001 - p["decay"]) - math.log10(0.003)) / 2,
    )
    return sum(100 * (v[i + 1] - v[i] ** 2) ** 2 + (1 - v[i]) ** 2 for i in range(2))


def in_crash_region(p: Params) -> bool:
    return p["x1"] > CRASH_X1_ABOVE and p["x2"] < CRASH_X2_BELOW


def _unit_coordinates(names: Sequence[str]) -> Callable[[Params], list[float]]:
    return lambda p: [p[n] for n in names]


# --- BBOB (ioh) ----------------------------------------------------------------------------


@functools.cache
def _bbob(fid: int) -> Any:
    import ioh  # optional: only the BBOB problems need it

    return ioh.get_problem(fid, instance=1, dimension=BBOB_DIMENSION)


def bbob_optimum(fid: int) -> float:
    return float(_bbob(fid).optimum.y)


def _bbob_problem(fid: int) -> Problem:
    names = [f"x{i + 1}" for i in range(BBOB_DIMENSION)]

    def function(p: Params) -> float:
        return float(_bbob(fid)([p[n] for n in names]))

    return Problem(
        name=f"bbob_f{fid}",
        description=f"BBOB f{fid} ({_bbob(fid).meta_data.name}), ioh instance 1, 10-D",
        specs=tuple(double(n, -5.0, 5.0) for n in names),
        function=function,
        optimum=bbob_optimum(fid),
        tags=("bbob",),
    )


# --- census (real tuning) ----------------------------------------------------------------

CENSUS_ROWS = 4000  # training rows and holdout rows each, from adult.data
CENSUS_ITERATIONS = 50


@functools.cache
def _census_features() -> tuple[Any, Any, Any, Any]:
    """Train/holdout matrices through the example's own column transformer, built once."""
    sys.path.insert(0, str(CENSUS_TRAINER))
    from sklearn.pipeline import Pipeline

    from trainer import data, pipeline

    frame, labels = data.load([str(CENSUS_DATA)])
    order = np.random.default_rng(0).permutation(len(frame))
    train, holdout = order[:CENSUS_ROWS], order[CENSUS_ROWS : 2 * CENSUS_ROWS]
    features = Pipeline(pipeline.build().steps[:2]).fit(frame.iloc[train])
    return (
        features.transform(frame.iloc[train]),
        labels[train],
        features.transform(frame.iloc[holdout]),
        labels[holdout],
    )


def census_error(p: Params) -> float:
    """1 − holdout accuracy of the census example's HistGradientBoostingClassifier."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    x_train, y_train, x_holdout, y_holdout = _census_features()
    model = HistGradientBoostingClassifier(
        max_iter=CENSUS_ITERATIONS,
        learning_rate=p["learning_rate"],
        max_leaf_nodes=p["max_leaf_nodes"],
        l2_regularization=p["l2_regularization"],
        min_samples_leaf=p["min_samples_leaf"],
        early_stopping=False,
        random_state=0,
    ).fit(x_train, y_train)
    return float(1.0 - (model.predict(x_holdout) == y_holdout).mean())


# --- the registry --------------------------------------------------------------------------


def _synthetic() -> dict[str, Callable[[], Problem]]:
    h6_names = [f"x{i + 1}" for i in range(6)]
    h6_specs = tuple(double(n, 0.0, 1.0) for n in h6_names)
    h6 = _unit_coordinates(h6_names)
    mixed_specs = (
        double("lr", 1e-5, 1e-1, "UNIT_LOG_SCALE"),
        double("dropout", 0.0, 0.8),
        integer("layers", 1, 10),
        categorical("act", list(MIXED_ACTIVATIONS)),
        integer("batch", 16, 512, "UNIT_LOG_SCALE"),
    )
    return {
        "branin": lambda: Problem(
            "branin",
            "Branin on [-5, 10] x [0, 15]",
            (double("x1", -5.0, 10.0), double("x2", 0.0, 15.0)),
            lambda p: branin(p["x1"], p["x2"]),
            BRANIN_OPTIMUM,
        ),
        "hartmann6": lambda: Problem(
            "hartmann6",
            "Hartmann-6 on [0, 1]^6",
            h6_specs,
            lambda p: hartmann6(h6(p)),
            HARTMANN6_OPTIMUM,
        ),
        "mixed": lambda: Problem(
            "mixed",
            "HPT_NOTES mixed: lr log, dropout, layers, act x4, batch log-INTEGER",
            mixed_specs,
            mixed,
            0.0,
        ),
        "mixed_all": lambda: Problem(
            "mixed_all",
            "mixed + momentum DISCRETE (reverse-log): every type and scale",
            (*mixed_specs, discrete("momentum", MOMENTUM_VALUES, "UNIT_REVERSE_LOG_SCALE")),
            mixed_all,
            0.0,
        ),
        "logscale": lambda: Problem(
            "logscale",
            "Rosenbrock-3 in log10 coordinates; lr 1e-5, l2 10^-7.5, decay 0.998",
            (
                double("lr", 1e-6, 1.0, "UNIT_LOG_SCALE"),
                double("l2", 1e-8, 1.0, "UNIT_LOG_SCALE"),
                double("decay", 1e-3, 1.0, "UNIT_REVERSE_LOG_SCALE"),
            ),
            logscale,
            0.0,
        ),
        "noisy_hartmann6": lambda: Problem(
            "noisy_hartmann6",
            f"Hartmann-6 + N(0, {NOISE_SD}^2) on the reported value",
            h6_specs,
            lambda p: hartmann6(h6(p)),
            HARTMANN6_OPTIMUM,
            noise_sd=NOISE_SD,
        ),
        "crash_hartmann6": lambda: Problem(
            "crash_hartmann6",
            f"Hartmann-6; trial fails where x1 > {CRASH_X1_ABOVE} and x2 < {CRASH_X2_BELOW}",
            h6_specs,
            lambda p: hartmann6(h6(p)),
            HARTMANN6_OPTIMUM,
            fails=in_crash_region,
        ),
    }


def _census() -> Problem:
    return Problem(
        name="census",
        description=(
            f"census HistGradientBoosting ({CENSUS_ITERATIONS} iterations), 1 - holdout "
            f"accuracy, {CENSUS_ROWS} train / {CENSUS_ROWS} holdout rows of adult.data"
        ),
        specs=(
            double("learning_rate", 0.01, 1.0, "UNIT_LOG_SCALE"),
            integer("max_leaf_nodes", 2, 128, "UNIT_LOG_SCALE"),
            double("l2_regularization", 1e-6, 100.0, "UNIT_LOG_SCALE"),
            integer("min_samples_leaf", 1, 200, "UNIT_LOG_SCALE"),
        ),
        function=census_error,
        optimum=None,
        default_seeds=5,
        tags=("real",),
    )


SYNTHETIC = (
    "branin",
    "hartmann6",
    "mixed",
    "mixed_all",
    "logscale",
    "noisy_hartmann6",
    "crash_hartmann6",
    *(f"bbob_f{fid}" for fid in BBOB_FUNCTIONS),
)
ALL = (*SYNTHETIC, "census")


def get_problem(name: str) -> Problem:
    """The problem called ``name`` (one of :data:`ALL`); KeyError names the choices."""
    if name == "census":
        return _census()
    if name.startswith("bbob_f") and name in SYNTHETIC:
        return _bbob_problem(int(name.removeprefix("bbob_f")))
    factories = _synthetic()
    if name not in factories:
        raise KeyError(f"unknown problem {name!r}; choose from {', '.join(ALL)}")
    return factories[name]()

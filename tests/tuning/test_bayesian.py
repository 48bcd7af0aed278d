"""The Bayesian optimiser (ALGORITHM_UNSPECIFIED): contract, parallel suggestions, quality.

Quality checks are deliberately loose (a few seeds, short studies) so that they stay fast and
robust; the real comparison against optuna lives in ``benchmarks/tuning.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest

from mlengine.tuning.base import Suggester, Trial
from mlengine.tuning.bayesian import BayesianConfig, BayesianOptimizer, warp_outputs
from mlengine.tuning.gp import GaussianProcess, GPPrior, Hyperparameters
from mlengine.tuning.random_search import RandomSearch
from mlengine.tuning.space import Dimension, DimensionKind, Params, SearchSpace

Objective = Callable[[Params], float | None]


def _double(name: str, low: float, high: float, scale: str = "NONE") -> Dimension:
    return Dimension(name, DimensionKind.DOUBLE, low=low, high=high, scale=scale)


BRANIN_SPACE = SearchSpace([_double("x1", -5.0, 10.0), _double("x2", 0.0, 15.0)])
BRANIN_MIN = 0.397887357729739

MIXED_SPACE = SearchSpace(
    [
        _double("lr", 1e-5, 1e-1, "UNIT_LOG_SCALE"),
        _double("momentum", 0.5, 0.999, "UNIT_REVERSE_LOG_SCALE"),
        _double("dropout", 0.0, 0.8, "UNIT_LINEAR_SCALE"),
        Dimension("layers", DimensionKind.INTEGER, low=1, high=10),
        Dimension("batch", DimensionKind.INTEGER, low=16, high=512, scale="UNIT_LOG_SCALE"),
        Dimension("units", DimensionKind.DISCRETE, values=(16.0, 32.0, 64.0, 128.0)),
        Dimension(
            "decay", DimensionKind.DISCRETE, values=(1e-4, 1e-3, 1e-2), scale="UNIT_LOG_SCALE"
        ),
        Dimension("act", DimensionKind.CATEGORICAL, values=("relu", "tanh", "gelu")),
    ]
)


def branin(params: Params) -> float:
    x1, x2 = float(params["x1"]), float(params["x2"])
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def mixed_objective(params: Params) -> float:
    act_offset = {"relu": 0.0, "tanh": 0.3, "gelu": 0.1}[str(params["act"])]
    return (
        act_offset
        + (math.log10(float(params["lr"])) + 3.0) ** 2
        + (float(params["dropout"]) - 0.2) ** 2
        + 0.05 * (float(params["layers"]) - 4) ** 2
        + 0.1 * (math.log2(float(params["batch"])) - 7) ** 2
        + (float(params["momentum"]) - 0.9) ** 2
        + 0.01 * math.log2(float(params["units"]))
        + 0.1 * abs(math.log10(float(params["decay"])) + 3)
    )


def run_study(
    suggester: Suggester,
    space: SearchSpace,
    objective: Objective,
    *,
    trials: int,
    seed: int,
    batch: int = 1,
    maximize: bool = False,
) -> list[Trial]:
    history: list[Trial] = []
    while len(history) < trials:
        count = min(batch, trials - len(history))
        suggestions = suggester.suggest(
            space, maximize=maximize, history=history, pending=[], count=count, seed=seed
        )
        assert len(suggestions) == count
        history.extend(Trial(params, objective(params)) for params in suggestions)
    return history


def _best(history: list[Trial]) -> float:
    return min(t.value for t in history if t.value is not None)


@pytest.fixture(scope="module")
def branin_history() -> list[Trial]:
    return run_study(BayesianOptimizer(), BRANIN_SPACE, branin, trials=12, seed=3)


def test_is_a_suggester() -> None:
    assert isinstance(BayesianOptimizer(), Suggester)


def test_first_suggestion_is_the_centre() -> None:
    (first,) = BayesianOptimizer().suggest(
        BRANIN_SPACE, maximize=False, history=[], pending=[], count=1, seed=0
    )
    assert first == {"x1": 2.5, "x2": 7.5}


@pytest.mark.parametrize("n_history", [0, 2, 12])
def test_same_arguments_give_the_same_suggestions(
    branin_history: list[Trial], n_history: int
) -> None:
    history = branin_history[:n_history]
    pending = [{"x1": 1.0, "x2": 2.0}]
    calls = [
        BayesianOptimizer().suggest(
            BRANIN_SPACE, maximize=False, history=history, pending=pending, count=3, seed=7
        )
        for _ in range(2)
    ]
    assert calls[0] == calls[1]


def test_different_seeds_give_different_designs() -> None:
    a, b = (
        BayesianOptimizer().suggest(
            BRANIN_SPACE, maximize=False, history=[], pending=[], count=3, seed=seed
        )
        for seed in (1, 2)
    )
    assert a[0] == b[0]  # both start at the centre
    assert a[1:] != b[1:]


def test_maximize_and_minimize_are_symmetric(branin_history: list[Trial]) -> None:
    negated = [Trial(t.params, None if t.value is None else -t.value) for t in branin_history]
    kwargs = {"pending": [], "count": 2, "seed": 5}
    minimised = BayesianOptimizer().suggest(
        BRANIN_SPACE, maximize=False, history=branin_history, **kwargs
    )
    maximised = BayesianOptimizer().suggest(BRANIN_SPACE, maximize=True, history=negated, **kwargs)
    assert minimised == maximised


def test_batch_of_five_is_distinct_and_spread_out(branin_history: list[Trial]) -> None:
    suggestions = BayesianOptimizer().suggest(
        BRANIN_SPACE, maximize=False, history=branin_history, pending=[], count=5, seed=1
    )
    x = BRANIN_SPACE.encode_many(suggestions)
    distances = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    assert len({BRANIN_SPACE.key(p) for p in suggestions}) == 5
    assert distances[np.triu_indices(5, k=1)].min() > 0.02


@pytest.mark.parametrize("pure_exploration", [True, False])
def test_batch_does_not_collapse_either_way(
    branin_history: list[Trial], pure_exploration: bool
) -> None:
    # One call for five (pure exploration or UCB on fantasies after the first), and five calls
    # for one each with the earlier ones pending (how the service fills freed slots).
    optimizer = BayesianOptimizer(BayesianConfig(pure_exploration=pure_exploration))
    joint = optimizer.suggest(
        BRANIN_SPACE, maximize=False, history=branin_history, pending=[], count=5, seed=2
    )
    one_by_one: list[Params] = []
    for _ in range(5):
        one_by_one += optimizer.suggest(
            BRANIN_SPACE,
            maximize=False,
            history=branin_history,
            pending=one_by_one,
            count=1,
            seed=2,
        )
    for batch in (joint, one_by_one):
        x = BRANIN_SPACE.encode_many(batch)
        distances = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
        assert len({BRANIN_SPACE.key(p) for p in batch}) == 5
        assert distances[np.triu_indices(5, k=1)].min() > 0.02


def test_mixed_space_suggestions_are_deterministic() -> None:
    history = run_study(
        BayesianOptimizer(), MIXED_SPACE, mixed_objective, trials=10, seed=6, batch=2
    )
    pending = MIXED_SPACE.sample(np.random.default_rng(1), 2)
    calls = [
        BayesianOptimizer().suggest(
            MIXED_SPACE, maximize=False, history=history, pending=pending, count=3, seed=6
        )
        for _ in range(2)
    ]
    assert calls[0] == calls[1]
    keys = {MIXED_SPACE.key(p) for p in [*(t.params for t in history), *pending, *calls[0]]}
    assert len(keys) == 15


def test_log_tail_warping_keeps_the_order_and_the_good_half_readable() -> None:
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0, -1000.0])  # higher is better; one diverged run
    z = warp_outputs(y, "log_tail")
    assert list(np.argsort(z)) == list(np.argsort(y))
    assert abs(float(np.mean(z))) < 1e-9 and abs(float(np.std(z)) - 1.0) < 1e-9
    plain = warp_outputs(y, "none")
    # The good values stay well apart instead of being squashed by the outlier.
    assert z[4] - z[0] > 0.5 > 10 * (plain[4] - plain[0])


@pytest.mark.parametrize("mean_variance", [0.0, 1.0])
def test_gp_far_from_data_reverts_to_its_mean(mean_variance: float) -> None:
    x = np.array([[0.1], [0.15], [0.2], [0.9]])
    y = np.array([1.0, 1.1, 0.9, -3.0])
    hyper = Hyperparameters(np.array([0.05]), 1.0, 1e-6, mean_variance)
    gp = GaussianProcess(x, y, np.array([0], dtype=np.int64), hyper)
    mean, std = gp.predict(np.array([[0.55]]))
    if mean_variance == 0.0:
        assert abs(float(mean[0])) < 1e-3
        assert abs(float(std[0]) - 1.0) < 1e-3
    else:
        # The integrated constant mean is the GLS average: the three clustered points count
        # about as much as the lone one.
        assert -1.5 < float(mean[0]) < 0.0
        assert float(std[0]) > 1.0
    assert GPPrior().mean_variance == 1.0


def test_pending_points_are_never_repeated() -> None:
    space = SearchSpace(
        [
            Dimension("layers", DimensionKind.INTEGER, low=1, high=4),
            Dimension("act", DimensionKind.CATEGORICAL, values=("relu", "tanh")),
            Dimension("units", DimensionKind.DISCRETE, values=(8.0, 16.0, 32.0)),
        ]
    )

    def objective(params: Params) -> float:
        return float(params["layers"]) + float(params["units"]) / 8.0

    history = run_study(BayesianOptimizer(), space, objective, trials=8, seed=0)
    pending = BayesianOptimizer().suggest(
        space, maximize=False, history=history, pending=[], count=5, seed=0
    )
    more = BayesianOptimizer().suggest(
        space, maximize=False, history=history, pending=pending, count=5, seed=0
    )
    keys = [space.key(p) for p in [*(t.params for t in history), *pending, *more]]
    assert len(keys) == len(set(keys)) == 18


def test_a_small_space_is_exhausted_without_repeats() -> None:
    space = SearchSpace([Dimension("k", DimensionKind.INTEGER, low=1, high=6)])
    history = run_study(
        BayesianOptimizer(), space, lambda p: float(p["k"]) ** 2, trials=6, seed=0, batch=2
    )
    assert sorted(t.params["k"] for t in history) == [1, 2, 3, 4, 5, 6]
    assert (
        BayesianOptimizer().suggest(
            space, maximize=False, history=history, pending=[], count=2, seed=0
        )
        == []
    )


def test_mixed_space_suggestions_are_points_of_the_space() -> None:
    history = run_study(
        BayesianOptimizer(), MIXED_SPACE, mixed_objective, trials=12, seed=4, batch=3
    )
    more = BayesianOptimizer().suggest(
        MIXED_SPACE, maximize=False, history=history, pending=[], count=4, seed=4
    )
    for params in [*(t.params for t in history), *more]:
        assert MIXED_SPACE.contains(params), params
    assert _best(history) < min(
        mixed_objective(p) for p in MIXED_SPACE.sample(np.random.default_rng(0), 12)
    )


def test_history_from_another_space_is_ignored(branin_history: list[Trial]) -> None:
    stale = [Trial({"x1": 1.0, "other": "a"}, 3.0), Trial({"x1": "bad", "x2": 1.0}, 1.0)]
    suggestions = BayesianOptimizer().suggest(
        BRANIN_SPACE,
        maximize=False,
        history=[*branin_history, *stale],
        pending=[],
        count=2,
        seed=0,
    )
    assert all(BRANIN_SPACE.contains(p) for p in suggestions)


def test_failed_trials_steer_away_from_the_crash_region() -> None:
    def crashes_right(params: Params) -> float | None:
        if float(params["x1"]) > 2.5:  # the right half of the box crashes
            return None
        return branin(params)

    def crash_fraction(suggester: Suggester, seed: int) -> float:
        history = run_study(suggester, BRANIN_SPACE, crashes_right, trials=25, seed=seed)
        late = history[10:]
        return sum(t.value is None for t in late) / len(late)

    ours = np.mean([crash_fraction(BayesianOptimizer(), seed) for seed in (0, 1)])
    random = np.mean([crash_fraction(RandomSearch(), seed) for seed in (0, 1)])
    assert ours < 0.5 * random


def test_beats_random_search_on_branin() -> None:
    def mean_regret(suggester: Suggester) -> float:
        regrets = [
            _best(run_study(suggester, BRANIN_SPACE, branin, trials=25, seed=seed)) - BRANIN_MIN
            for seed in (0, 1, 2)
        ]
        return float(np.mean(regrets))

    ours, random = mean_regret(BayesianOptimizer()), mean_regret(RandomSearch())
    assert ours < 0.1
    assert ours < 0.2 * random


def test_suggestion_time_at_sixty_trials() -> None:
    space = SearchSpace([_double(f"x{i}", 0.0, 1.0) for i in range(6)])
    rng = np.random.default_rng(0)
    history = [Trial(p, float(np.sum((space.encode(p) - 0.3) ** 2))) for p in space.sample(rng, 60)]
    optimizer = BayesianOptimizer()
    start = time.process_time()
    optimizer.suggest(space, maximize=False, history=history, pending=[], count=1, seed=0)
    assert time.process_time() - start < 1.5

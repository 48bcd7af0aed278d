"""The problem suite of benchmarks/tuning.py: known optima, failures, noise, the reference."""

from __future__ import annotations

import importlib
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
problems = importlib.import_module("tuning_problems")
report = importlib.import_module("tuning_report")

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("x", problems.BRANIN_MINIMISERS)
def test_branin_has_its_three_global_minima(x: tuple[float, float]) -> None:
    assert problems.branin(*x) == pytest.approx(0.397887, abs=1e-5)
    branin = problems.get_problem("branin")
    assert branin.optimum == pytest.approx(0.397887, abs=1e-6)


def test_branin_minima_are_minima() -> None:
    for x1, x2 in problems.BRANIN_MINIMISERS:
        for dx, dy in itertools.product((-0.01, 0.01), repeat=2):
            assert problems.branin(x1 + dx, x2 + dy) > problems.BRANIN_OPTIMUM


def test_hartmann6_optimum_at_its_known_minimiser() -> None:
    x = dict(zip([f"x{i}" for i in range(1, 7)], problems.HARTMANN6_MINIMISER, strict=True))
    problem = problems.get_problem("hartmann6")
    assert problem.optimum == pytest.approx(-3.32237, abs=1e-5)
    assert problem.objective(x, RNG) == pytest.approx(-3.32237, abs=1e-5)


def test_hartmann6_random_points_are_above_the_optimum() -> None:
    points = report.sample_uniform(problems.get_problem("hartmann6").specs, RNG, 2000)
    values = [problems.get_problem("hartmann6").objective(p, RNG) for p in points]
    assert min(values) > problems.HARTMANN6_OPTIMUM


@pytest.mark.parametrize("name", ["mixed", "mixed_all"])
def test_mixed_optimum_is_zero_off_centre_and_global(name: str) -> None:
    problem = problems.get_problem(name)
    best = {
        s.parameter_name: problems.MIXED_OPTIMUM_PARAMS[s.parameter_name] for s in problem.specs
    }
    assert problem.objective(best, RNG) == pytest.approx(0.0, abs=1e-12)
    assert problem.optimum == 0.0
    values = [problem.objective(p, RNG) for p in report.sample_uniform(problem.specs, RNG, 3000)]
    assert min(values) > 0.0
    # Off-centre: the middle of every scaled range is clearly worse, even with the best act.
    centre = report.sample_uniform(problem.specs, RNG, 1)[0] | {
        "lr": 10**-3, "dropout": 0.4, "layers": 5, "batch": 90, "act": "relu"
    }  # fmt: skip
    assert problem.objective(centre, RNG) > 0.2


def test_mixed_all_uses_every_type_and_scale() -> None:
    specs = problems.get_problem("mixed_all").specs
    assert {str(s.type) for s in specs} == {"DOUBLE", "INTEGER", "CATEGORICAL", "DISCRETE"}
    scales = {str(s.scale_type) for s in specs if s.scale_type is not None}
    assert {"UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE"} <= scales
    categorical = next(s for s in specs if str(s.type) == "CATEGORICAL")
    assert len(categorical.categorical_values or []) == 4


def test_mixed_matches_the_stored_reference_definition() -> None:
    # HPT_NOTES: off_a + 0.5 (log10 lr - s_a - 0.1 d)^2 + 0.04 d^2 + ...; tanh at lr 10^-1.7,
    # 6 layers, dropout 0.2, batch 200 costs exactly its offset 0.25.
    point = {"lr": 10**-1.7, "dropout": 0.2, "layers": 6, "act": "tanh", "batch": 200}
    assert problems.mixed(point) == pytest.approx(0.25)


def test_logscale_optimum_sits_at_the_low_end_of_its_log_scales() -> None:
    problem = problems.get_problem("logscale")
    best = problems.LOGSCALE_OPTIMUM_PARAMS
    assert problem.objective(best, RNG) == pytest.approx(0.0, abs=1e-12)
    for spec in problem.specs:
        low, high = spec.min_value or 0.0, spec.max_value or 0.0
        x = best[spec.parameter_name]
        if str(spec.scale_type) == "UNIT_LOG_SCALE":
            assert math.log(x / low) / math.log(high / low) < 0.2
        else:  # reverse log: the top of x is the low end of log(low + high - x)
            assert math.log((low + high - x) / low) / math.log(high / low) < 0.2
    values = [problem.objective(p, RNG) for p in report.sample_uniform(problem.specs, RNG, 3000)]
    assert min(values) > 0.0


def test_crash_region_fails_and_excludes_the_optimum() -> None:
    problem = problems.get_problem("crash_hartmann6")
    optimum = dict(zip([f"x{i}" for i in range(1, 7)], problems.HARTMANN6_MINIMISER, strict=True))
    assert problem.objective(optimum, RNG) == pytest.approx(-3.32237, abs=1e-5)
    assert problem.objective(optimum | {"x1": 0.8, "x2": 0.1}, RNG) is None
    assert problem.evaluate(optimum | {"x1": 0.8, "x2": 0.1}, RNG) == (None, None)
    assert problem.objective(optimum | {"x1": 0.8, "x2": 0.5}, RNG) is not None
    assert problem.objective(optimum | {"x1": 0.5, "x2": 0.1}, RNG) is not None
    pool = report.random_pool(problem, 4000)
    failed = sum(v is None for v in pool.reported) / 4000
    assert failed == pytest.approx((1 - 0.6) * 0.4, abs=0.03)


def test_noisy_variant_reports_noise_but_regret_is_noiseless() -> None:
    problem = problems.get_problem("noisy_hartmann6")
    x = dict(zip([f"x{i}" for i in range(1, 7)], problems.HARTMANN6_MINIMISER, strict=True))
    draws = [problem.evaluate(x, RNG) for _ in range(400)]
    reported = np.array([r for r, _ in draws])
    assert {t for _, t in draws} == {problems.hartmann6(problems.HARTMANN6_MINIMISER)}
    assert reported.std() == pytest.approx(problems.NOISE_SD, rel=0.2)
    # The reported best is the lucky noisy draw; its regret is measured without the noise.
    curve = report.best_regret_curve([-3.0, -3.5, -3.4], [-3.1, -3.2, -3.3], -3.3, 0.0)
    assert curve == pytest.approx([0.2, 0.1, 0.1])


def test_regret_before_any_success_is_the_worst_value() -> None:
    curve = report.best_regret_curve([None, None, 2.0, 1.0], [None, None, 2.0, 1.0], 0.0, 5.0)
    assert curve == [5.0, 5.0, 2.0, 1.0]


def test_expected_best_of_random_search_is_the_subset_average() -> None:
    values = tuple(sorted(RNG.random(9)))
    pool = report.RandomPool(values, values)
    for t in (1, 2, 4):
        brute = np.mean([min(c) for c in itertools.combinations(values, t)])
        assert pool.expected_best_regret(t, 0.0)[-1] == pytest.approx(brute)


def test_expected_best_of_random_search_on_branin_matches_monte_carlo() -> None:
    problem = problems.get_problem("branin")
    pool = report.random_pool(problem, 20_000, seed=1)
    expected = pool.expected_best_regret(10, problem.optimum)
    # 10 i.i.d. draws, the best of each group of 10: direct Monte Carlo.
    rng = np.random.default_rng(2)
    direct = [problem.function(p) for p in report.sample_uniform(problem.specs, rng, 40_000)]
    best = np.array(direct).reshape(-1, 10).min(axis=1) - problem.optimum
    assert expected[-1] == pytest.approx(best.mean(), rel=0.08)
    assert expected == sorted(expected, reverse=True)


def test_uniform_sampling_respects_types_and_scales() -> None:
    specs = problems.get_problem("mixed_all").specs
    points = report.sample_uniform(specs, RNG, 4000)
    lr = np.log10([p["lr"] for p in points])
    assert lr.min() >= -5 and lr.max() <= -1 and np.median(lr) == pytest.approx(-3, abs=0.15)
    assert all(isinstance(p["layers"], int) and 1 <= p["layers"] <= 10 for p in points)
    assert all(isinstance(p["batch"], int) and 16 <= p["batch"] <= 512 for p in points)
    assert {p["act"] for p in points} == set(problems.MIXED_ACTIVATIONS)
    assert {p["momentum"] for p in points} == set(problems.MOMENTUM_VALUES)
    decay = [
        p["decay"] for p in report.sample_uniform(problems.get_problem("logscale").specs, RNG, 4000)
    ]
    assert np.median(decay) > 0.9  # reverse log: dense near the top of [0.001, 1]


def test_bbob_problems_know_their_optimum() -> None:
    pytest.importorskip("ioh")
    problem = problems.get_problem("bbob_f2")
    assert len(problem.specs) == problems.BBOB_DIMENSION
    point = dict.fromkeys((s.parameter_name for s in problem.specs), 0.0)
    assert problem.objective(point, RNG) > problem.optimum


def test_unknown_problem_names_the_choices() -> None:
    with pytest.raises(KeyError, match="branin"):
        problems.get_problem("nope")

"""streamx.analysis against rliable itself (Agarwal et al., 2021) on the same scores: IQM, its
stratified bootstrap CI, performance profiles and the probability of improvement. Skipped when
rliable is not installed (it is in the dev extra). Point values must agree exactly; the bounds of
two independent bootstraps (numpy's generator here, rliable's arch-based one) only within
bootstrap noise, so they are compared with a tolerance measured for 4000 resamples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamx import analysis

rliable_library = pytest.importorskip("rliable.library")
rliable_metrics = pytest.importorskip("rliable.metrics")

RESAMPLES = 4000
IMPROVEMENT_RESAMPLES = 1000  # rliable runs scipy's Mann-Whitney U once per task and resample: slow
TASKS = ("A", "B", "C")


def _scores() -> dict[str, np.ndarray]:
    """Fixed scores, (runs × tasks) as rliable takes them; rounded so that ties occur."""
    rng = np.random.default_rng(12345)
    return {
        "stream_ac": np.round(rng.normal([0.8, 0.6, 0.9], 0.15, size=(6, 3)), 1),
        "ppo": np.round(rng.normal([0.5, 0.6, 0.4], 0.2, size=(6, 3)), 1),
    }


def _per_run(scores: dict[str, np.ndarray]) -> list[dict]:
    """The same scores as the per-run rows `streamx plot` aggregates."""
    return [{"method": method, "env": TASKS[task], "normalized_score": float(matrix[run, task]),
             "normalization": "min-max"}
            for method, matrix in scores.items() for run in range(matrix.shape[0]) for task in range(matrix.shape[1])]


def _noise(boot: np.ndarray) -> float:
    """Allowed difference between the CI bounds of two independent bootstraps of the same
    statistic: a fifth of the bootstrap distribution's standard deviation plus one grid step of
    the IQM of these scores (0.1 / 10: scores on a 0.1 grid, 10 of 18 values averaged)."""
    return 0.2 * float(np.std(boot)) + 0.01


def _rliable_interval(data, func, reps: int = RESAMPLES) -> tuple[float, np.ndarray]:
    np.random.seed(0)  # rliable draws its run indices from numpy's global generator
    points, intervals = rliable_library.get_interval_estimates({"x": data}, func, reps=reps)
    return points["x"], intervals["x"]


def test_iqm_and_its_stratified_bootstrap_ci_agree_with_rliable():
    scores = _scores()
    rows = analysis.rliable_rows(_per_run(scores), np.array([0.5]), RESAMPLES, seed=0)
    for method, matrix in scores.items():
        ours = next(r for r in rows if r["method"] == method and r["statistic"] == "iqm")
        point, (low, high) = _rliable_interval(matrix, lambda x: np.array([rliable_metrics.aggregate_iqm(x)]))
        assert ours["value"] == pytest.approx(float(point[0]), abs=1e-12)
        assert ours["n_tasks"] == 3 and ours["n_runs"] == 18
        boot = analysis.stratified_bootstrap([matrix[:, t] for t in range(3)],
                                             lambda s: analysis.interquartile_mean(s, axis=1), RESAMPLES, seed=0)
        assert ours["ci_low"] == pytest.approx(float(low[0]), abs=_noise(boot))
        assert ours["ci_high"] == pytest.approx(float(high[0]), abs=_noise(boot))
        mean = next(r for r in rows if r["method"] == method and r["statistic"] == "mean")
        assert mean["value"] == pytest.approx(float(rliable_metrics.aggregate_mean(matrix)), abs=1e-12)


def test_performance_profiles_agree_with_rliable():
    scores = _scores()
    taus = np.linspace(0.0, 1.2, 13)
    rows = analysis.rliable_rows(_per_run(scores), taus, RESAMPLES, seed=0)
    np.random.seed(0)
    profiles, intervals = rliable_library.create_performance_profile(scores, taus, reps=RESAMPLES)
    for method in scores:
        ours = [r for r in rows if r["method"] == method and r["statistic"] == "profile"]
        assert [r["tau"] for r in ours] == pytest.approx(taus)
        # every task has as many runs: the per-task average is rliable's pooled fraction
        assert [r["value"] for r in ours] == pytest.approx(profiles[method], abs=1e-12)
        low, high = intervals[method]
        for r, rl_low, rl_high in zip(ours, low, high):
            assert r["ci_low"] == pytest.approx(rl_low, abs=0.06)  # one step of 1/18 (noise)
            assert r["ci_high"] == pytest.approx(rl_high, abs=0.06)


def test_probability_of_improvement_agrees_with_rliable():
    scores = _scores()
    x, y = scores["stream_ac"], scores["ppo"]
    assert len({*x.ravel().tolist(), *y.ravel().tolist()}) < x.size + y.size  # ties occur
    rows = {(r["method"], r["versus"]): r
            for r in analysis.improvement_rows(_per_run(scores), IMPROVEMENT_RESAMPLES, seed=0)}
    for first, second in (("stream_ac", "ppo"), ("ppo", "stream_ac")):
        expected = float(rliable_metrics.probability_of_improvement(scores[first], scores[second]))
        assert rows[first, second]["value"] == pytest.approx(expected, abs=1e-12)
    ours = rows["stream_ac", "ppo"]
    point, (low, high) = _rliable_interval(
        [x, y], lambda a, b: np.array([rliable_metrics.probability_of_improvement(a, b)]), IMPROVEMENT_RESAMPLES)
    assert float(point[0]) == pytest.approx(ours["value"])
    boot = analysis.improvement_bootstrap([x[:, t] for t in range(3)], [y[:, t] for t in range(3)],
                                          IMPROVEMENT_RESAMPLES, seed=0)
    tolerance = 0.25 * float(np.std(boot)) + 0.01
    assert ours["ci_low"] == pytest.approx(float(low[0]), abs=tolerance)
    assert ours["ci_high"] == pytest.approx(float(high[0]), abs=tolerance)
    assert rows["stream_ac", "ppo"]["value"] + rows["ppo", "stream_ac"]["value"] == pytest.approx(1.0)
    assert not math.isclose(rows["stream_ac", "ppo"]["value"], 0.5)

"""Learning tests (slow): stream Q(λ), SARSA(λ) and AC(λ) learn CartPole-v1 with the paper's
10,000-step time limit within 100k steps on at least 4 of 5 seeds.

Criterion: an episode with return ≥ 5,000 ends within 100k steps (the run stops there to
save CI time). A random policy averages ≈22 per episode; balancing for 5,000 consecutive
steps needs a learned policy. This is the measure the issue quotes for the authors' code at
the paper's settings: first such episode at ≈21–22k steps (Stream Q, seeds 0–2) and
≈25–37k steps (Stream AC, seeds 0–1).

Calibration (streamx, `python experiments/cartpole_learning.py`, seeds 0–4, this machine):
    stream_q      14,455 / 20,203 / 24,617 / 24,633 / 21,046 steps
    stream_sarsa  17,306 / 29,183 / 10,408 / 22,739 / 17,021 steps
    stream_ac     14,387 / 20,218 / 14,850 / 11,636 / 10,601 steps
so 100k steps leaves a wide margin while still failing an agent that does not learn.

The other learning tests (one seed each, under ~2 minutes on one core) use thresholds far above
a random policy and below the minimum measured over several seeds; the measurements are written
beside each test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamx.config import Config
from streamx.outputs import read_csv
from streamx.run import resolve_config, train

THRESHOLD = 5_000.0
BUDGET = 100_000
SEEDS = (0, 1, 2, 3, 4)
REQUIRED = 4


def _solved(algo: str, seed: int, run_dir) -> int | None:
    config = resolve_config(algo, "CartPole-v1", overrides={
        "seed": seed, "total_steps": BUDGET, "run_dir": str(run_dir), "progress": False})
    assert config.max_episode_steps == 10_000 and config.hidden_sizes == [32, 32]
    result = train(config, on_episode=lambda step, ret, length: ret >= THRESHOLD)
    return result.steps if result.stopped_early else None


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["stream_q", "stream_sarsa", "stream_ac"])
def test_learns_cartpole_within_100k_steps_on_4_of_5_seeds(algo, tmp_path):
    outcomes: dict[int, int | None] = {}
    for seed in SEEDS:
        outcomes[seed] = _solved(algo, seed, tmp_path / f"seed{seed}")
        successes = sum(v is not None for v in outcomes.values())
        failures = len(outcomes) - successes
        if successes >= REQUIRED or failures > len(SEEDS) - REQUIRED:
            break
    solved = sum(v is not None for v in outcomes.values())
    assert solved >= REQUIRED, f"{algo}: step of the first return ≥ 5000 per seed: {outcomes}"


def _window_mean(run_dir: Path, start: int, end: int) -> float:
    """Mean return of the episodes that ended in steps (start, end]."""
    returns = [float(row["return"]) for row in read_csv(Path(run_dir) / "episodes.csv")
               if start < int(row["step"]) <= end]
    assert returns, f"no episode ended in ({start}, {end}]"
    return sum(returns) / len(returns)


# Hopper-v5, stream AC at the paper's settings, 40k steps. Mean return of the episodes ending in
# the first 10k steps and in the last 10k (30k–40k), measured for seeds 0–4 on this machine:
#   first 10k   133.7  129.3  146.8  141.4  133.7
#   30k–40k     221.1  303.5  341.7  341.5  235.4      (last / first ≥ 1.65)
# A uniformly random policy scores 16.7 per episode (100 episodes, docs/results.md).
HOPPER_STEPS = 40_000
HOPPER_THRESHOLD = 150.0
HOPPER_GAIN = 1.25


def _train_seed_0(tmp_path: Path, algo: str, env: str, extra: str, steps: int, **overrides: Any) -> Config:
    """Train seed 0 of ``algo`` on ``env`` into tmp_path/run (skipped without the env's extra)."""
    pytest.importorskip(extra, reason=f"the {extra} extra is not installed")
    config = resolve_config(algo, env, overrides={
        "seed": 0, "total_steps": steps, "run_dir": str(tmp_path / "run"), "progress": False, **overrides})
    train(config)
    return config


@pytest.mark.slow
def test_stream_ac_learns_hopper(tmp_path):
    config = _train_seed_0(tmp_path, "stream_ac", "Hopper-v5", "mujoco", HOPPER_STEPS)
    assert config.hidden_sizes == [128, 128] and config.lr == 1.0 and config.reward_scaling
    first = _window_mean(tmp_path / "run", 0, 10_000)
    last = _window_mean(tmp_path / "run", HOPPER_STEPS - 10_000, HOPPER_STEPS)
    assert last >= HOPPER_THRESHOLD and last >= HOPPER_GAIN * first, f"first 10k: {first:.1f}, last 10k: {last:.1f}"


# MinAtar Breakout, stream Q at the paper's settings except the ε horizon: exploration_steps=20k
# (ε from 1 to 0.01 over 20k steps) instead of the paper's 1M, because at the paper's horizon ε
# is still 0.96 at 40k steps and the episodes of such a run measure exploration, not what was
# learned. Mean return of the episodes ending in 20k–40k steps, seeds 0–4 on this machine:
#   4.5  3.0  3.8  4.6  2.7
# (later, 80k–100k: 5.1  3.3  4.8  5.0  3.7). A uniformly random policy scores 0.375 per
# episode (3,000 episodes). At the paper's horizon the greedy policy (streamx eval, 20
# episodes) scored 1.3–3.2 at 25k–100k steps, seeds 0–2.
MINATAR_STEPS = 40_000
MINATAR_EXPLORATION_STEPS = 20_000
MINATAR_THRESHOLD = 1.5


@pytest.mark.slow
def test_stream_q_learns_minatar_breakout(tmp_path):
    config = _train_seed_0(tmp_path, "stream_q", "MinAtar/Breakout-v1", "minatar", MINATAR_STEPS,
                           exploration_steps=MINATAR_EXPLORATION_STEPS)
    assert config.epsilon_end == 0.01 and config.lr == 1.0
    last = _window_mean(tmp_path / "run", MINATAR_EXPLORATION_STEPS, MINATAR_STEPS)
    assert last >= MINATAR_THRESHOLD, f"mean return after exploration: {last:.2f}"


# ETT, stream TD on one whole pass as the paper runs it (γ = λ = 0.9, reward-scaled cumulant, OT
# two rows on), normalized prediction error (1 = the mean predictor in hindsight; predicting 0
# always scores 4.46 on ETTh2), seeds 0–4 on this machine:
#   ETTh2 (17,418 steps)           0.063 0.061 0.067 0.063 0.061   last half 0.095–0.104
#   ett_like_series(17420)         0.022 0.023 0.023 0.021 0.022   last half 0.027–0.034
ETT_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ett" / "ETTh2.csv"
ETT_THRESHOLD = {"ETTh2": (0.2, 0.3), "generated": (0.08, 0.1)}  # (whole pass, last half)


@pytest.mark.slow
def test_stream_td_predicts_the_ett_series(tmp_path):
    if ETT_CSV.exists():  # read in place, never copied into the repository
        source, path = "ETTh2", ETT_CSV
    else:
        from test_ett import ett_like_series, write_ett_csv

        source, path = "generated", write_ett_csv(tmp_path / "ETTh2-like.csv", ett_like_series(17_420))
    config = resolve_config("stream_td", "streamx/ETTh2-v0", overrides={
        "seed": 0, "env_kwargs": {"path": str(path)}, "run_dir": str(tmp_path / "run"), "progress": False})
    assert (config.gamma, config.lamda, config.reward_scaling, config.ett_cumulant) == (0.9, 0.9, True, "paper")
    assert train(config).steps == 17_418  # one pass
    report = json.loads((tmp_path / "run" / "prediction.json").read_text())
    whole, last_half = ETT_THRESHOLD[source]
    assert report["normalized_prediction_error"] < whole, (source, report)
    assert report["last_half_normalized_prediction_error"] < last_half, (source, report)

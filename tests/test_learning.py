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
"""

from __future__ import annotations

import pytest

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

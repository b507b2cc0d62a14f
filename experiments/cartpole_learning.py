"""Measure how fast stream Q(λ), SARSA(λ) and AC(λ) learn CartPole-v1 with the paper's
10,000-step time limit (the calibration behind tests/test_learning.py).

For each algorithm and seed, trains for at most ``--steps`` steps and records the step at
which the first episode with return ≥ ``--threshold`` ends. Prints one JSON line per run.

    python experiments/cartpole_learning.py --algos stream_q stream_sarsa stream_ac --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from streamx.run import resolve_config, train


def first_success(algo: str, seed: int, steps: int, threshold: float, run_root: str) -> dict:
    config = resolve_config(algo, "CartPole-v1", overrides={
        "seed": seed, "total_steps": steps, "progress": False, "run_dir": f"{run_root}/{algo}_{seed}"})
    start = time.perf_counter()
    result = train(config, on_episode=lambda step, ret, length: ret >= threshold)
    return {"algo": algo, "seed": seed, "solved_at": result.steps if result.stopped_early else None,
            "episodes": len(result.episode_returns), "best_return": max(result.episode_returns, default=0.0),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["stream_q", "stream_sarsa", "stream_ac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--threshold", type=float, default=5_000.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run_root:
        for algo in args.algos:
            for seed in args.seeds:
                print(json.dumps(first_success(algo, seed, args.steps, args.threshold, run_root)), flush=True)


if __name__ == "__main__":
    main()

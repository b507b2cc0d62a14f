"""Stream TD(λ) on the ETT prediction task (PAPER §4): one pass over the series, then a report
of how well the online predictions v(s_t) matched the true discounted returns G_t.

γ = 0.9, λ = 0.9, every other hyperparameter the paper's (α = 1, κ = 2, sparse init, LayerNorm,
MLP 128-128); observations normalized by Welford statistics (NormalizeObservation), the cumulant
scaled as a reward is in control (ScaleReward) and paired as the paper pairs it (the step into
row t returns OT of row t + 1), no time feature. Each prediction is made before the update on its
own transition. The returns it is scored against are those of the cumulants the learner saw.

    python experiments/ett_stream_td.py --path /path/to/ETTh2.csv --out ett_h2.json
    python experiments/ett_stream_td.py --dataset ETTm2          # download and cache it once
    python experiments/ett_stream_td.py --no-reward-scaling --cumulant same_row   # the other choices

The data files are not part of streamx (CC BY-ND 4.0, zhouhaoyi/ETDataset); see streamx.ett.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamx import make_agent
from streamx.ett import CUMULANT_LEADS, ETT_DATASETS, ETTPrediction, discounted_returns, prediction_report
from streamx.run import seed_everything
from streamx.wrappers import NormalizeObservation, ScaleReward

# Where this machine keeps the ETT CSVs beside the repository (never inside it).
SHARED_ETT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ett"


def run_pass(path: Path | None, dataset: str, seed: int, gamma: float, lamda: float,
             hidden_sizes: list[int], reward_scaling: bool = True,
             cumulant: str = "paper") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One Stream TD(λ) pass; returns (report, per-step arrays)."""
    seed_everything(seed)
    base = ETTPrediction(dataset, path=path, cumulant=cumulant)
    env = NormalizeObservation(ScaleReward(base, gamma=gamma) if reward_scaling else base)
    agent = make_agent("stream_td", env.observation_space, env.action_space, seed=seed, gamma=gamma, lamda=lamda,
                       hidden_sizes=hidden_sizes)
    predictions = np.empty(base.num_transitions)
    td_errors = np.empty(base.num_transitions)
    rewards = np.empty(base.num_transitions)
    start = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    for t in range(base.num_transitions):
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        metrics = agent.update(obs, action, float(reward), next_obs, terminated, truncated)
        predictions[t], td_errors[t], rewards[t] = metrics["prediction"], metrics["td_error"], reward
        obs = next_obs
    elapsed = time.perf_counter() - start
    assert terminated, "one pass ends with the last row"
    returns = discounted_returns(rewards, gamma)
    report: dict[str, Any] = {
        "dataset": dataset if path is None else Path(path).stem,
        "path": None if path is None else str(path),
        "seed": seed, "gamma": gamma, "lamda": lamda, "hidden_sizes": hidden_sizes,
        "reward_scaling": reward_scaling, "cumulant": cumulant,
        **prediction_report(predictions, returns, td_errors),
        "wall_time_s": round(elapsed, 2),
        "steps_per_second": round(base.num_transitions / elapsed, 1),
    }
    return report, {"predictions": predictions, "returns": returns, "td_errors": td_errors,
                    "cumulants": base.cumulants, "rewards": rewards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", type=Path, default=None,
                        help=f"an ETT CSV; default {SHARED_ETT_DIR}/<dataset>.csv if present, else the loader's cache")
    parser.add_argument("--dataset", default="ETTh2", choices=ETT_DATASETS, help="which ETT series (without --path)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--lamda", type=float, default=0.9)
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--no-reward-scaling", action="store_true", help="learn from the raw cumulant")
    parser.add_argument("--cumulant", default="paper", choices=list(CUMULANT_LEADS),
                        help="paper: the step into row t returns OT of row t + 1; same_row: OT of row t")
    parser.add_argument("--out", type=Path, default=None, help="write the report here as JSON")
    parser.add_argument("--arrays-out", type=Path, default=None,
                        help="also save predictions, returns, TD errors and cumulants here (.npz)")
    args = parser.parse_args()

    path = args.path
    if path is None and (SHARED_ETT_DIR / f"{args.dataset}.csv").is_file():
        path = SHARED_ETT_DIR / f"{args.dataset}.csv"
    report, arrays = run_pass(path, args.dataset, args.seed, args.gamma, args.lamda, args.hidden_sizes,
                              reward_scaling=not args.no_reward_scaling, cumulant=args.cumulant)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.arrays_out is not None:
        np.savez_compressed(args.arrays_out, **arrays)


if __name__ == "__main__":
    main()

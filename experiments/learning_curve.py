"""Train one algorithm on one environment for several seeds and print its learning curve in
the paper's aggregation: the mean return of the episodes ending in each window (default
50k steps) per run, then mean ± standard error across runs (PAPER §6).

    python experiments/learning_curve.py stream_ac Hopper-v5 --steps 300000 --seeds 0 1 --out runs/hopper
    python experiments/learning_curve.py stream_q MinAtar/Breakout-v1 --steps 1000000 --seeds 0 --out runs/minatar
    python experiments/learning_curve.py --summarize runs/hopper/seed0 runs/hopper/seed1   # existing runs only

Runs are ordinary streamx run directories (``<out>/seed<N>``); the table is Markdown. The aggregation
is ``streamx.analysis`` (the same as ``streamx plot``, which also draws it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from streamx.analysis import mean_stderr, window_ends, window_means
from streamx.outputs import read_csv


def run_window_means(run_dir: Path, window: int, total: int) -> np.ndarray:
    rows = read_csv(run_dir / "episodes.csv")
    return window_means([int(r["step"]) for r in rows], [float(r["return"]) for r in rows], window, total)


def curve_table(run_dirs: list[Path], window: int) -> str:
    total = max(int(read_csv(d / "metrics.csv")[-1]["step"]) for d in run_dirs)
    per_run = np.array([run_window_means(d, window, total) for d in run_dirs])
    lines = ["| steps | mean return | ± s.e. | per seed |", "|---:|---:|---:|---|"]
    for i, end in enumerate(window_ends(total, window)):
        column = per_run[:, i]
        mean, stderr = mean_stderr(column)
        seeds = " / ".join(f"{v:.0f}" for v in column)
        lines.append(f"| {end:,} | {mean:.1f} | {stderr:.1f} | {seeds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("algo", nargs="?")
    parser.add_argument("env", nargs="?")
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("runs/curve"))
    parser.add_argument("--window", type=int, default=50_000)
    parser.add_argument("--summarize", type=Path, nargs="+", help="only tabulate these existing run directories")
    args = parser.parse_args()
    if args.summarize:
        print(curve_table(args.summarize, args.window))
        return
    from streamx.run import resolve_config, train

    run_dirs = []
    for seed in args.seeds:
        run_dir = args.out / f"seed{seed}"
        config = resolve_config(args.algo, args.env, overrides={
            "seed": seed, "total_steps": args.steps, "run_dir": str(run_dir), "progress": False})
        train(config)
        run_dirs.append(run_dir)
    print(curve_table(run_dirs, args.window))


if __name__ == "__main__":
    main()

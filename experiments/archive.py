"""Copy a sweep's results into a directory meant for version control.

    python experiments/archive.py runs/sweeps/stream_barrier_mujoco/laptop \
        experiments/results/stream_barrier_mujoco/laptop

For every run directory of SRC this copies the plain result files (config.json, episodes.csv,
metrics.csv, summary.json, and prediction.csv where present) to DST/<run>/, and sweep.json.
A run that has not ended (status incomplete or interrupted) also gets its newest checkpoint, so
``streamx sweep <experiment> --budget <b> --out DST`` continues it on another machine or in
another session; finished and diverged runs get none. Nothing else is copied: no older
checkpoints, no SB3 ``model.zip`` and no pickled ``vecnormalize.pkl`` (the newest checkpoint
holds the normalizer statistics). Existing files in DST are replaced, older checkpoints of a run
in DST removed. Prints one line per run.

The figures of docs/reproduce.md are made from such copies under experiments/results/, so
``streamx plot experiments/results/<experiment>/<budget>`` redraws them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from streamx.run import checkpoint_paths
from streamx.sweep import run_status

RESULT_FILES = ("config.json", "episodes.csv", "metrics.csv", "summary.json", "prediction.csv")


def archive(source: Path, target: Path) -> list[tuple[str, str, bool]]:
    """Copy ``source``'s runs into ``target``; returns (run, status, checkpoint copied) per run."""
    if not source.is_dir():
        raise SystemExit(f"archive: {source} is not a directory (pass a sweep directory, e.g. runs/sweeps/X/laptop)")
    target.mkdir(parents=True, exist_ok=True)
    if (source / "sweep.json").is_file():
        shutil.copy2(source / "sweep.json", target / "sweep.json")
    done = []
    for run_dir in sorted(path for path in source.iterdir() if (path / "config.json").is_file()):
        destination = target / run_dir.name
        destination.mkdir(exist_ok=True)
        for name in RESULT_FILES:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, destination / name)
            else:
                (destination / name).unlink(missing_ok=True)
        status = run_status(run_dir)
        for old in checkpoint_paths(destination):
            old.unlink()
        newest = checkpoint_paths(run_dir)[-1:] if status in ("incomplete", "interrupted") else []
        for path in newest:
            (destination / "checkpoints").mkdir(exist_ok=True)
            shutil.copy2(path, destination / "checkpoints" / path.name)
        if not newest and (destination / "checkpoints").is_dir():
            (destination / "checkpoints").rmdir()
        done.append((run_dir.name, status, bool(newest)))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a sweep directory, e.g. runs/sweeps/stream_barrier_mujoco/laptop")
    parser.add_argument("target", type=Path, help="e.g. experiments/results/stream_barrier_mujoco/laptop")
    args = parser.parse_args(argv)
    for run, status, checkpoint in archive(args.source, args.target):
        print(f"{run}  {status}{'  + newest checkpoint' if checkpoint else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Copy a sweep's results into a directory meant for version control.

    python experiments/archive.py runs/sweeps/stream_barrier_mujoco/laptop \
        experiments/results/stream_barrier_mujoco/laptop

For every run directory of SRC this copies the plain result files (config.json, versions.json,
episodes.csv, metrics.csv, summary.json, and prediction.csv and eval.json where present) to DST/<run>/,
and sweep.json.
A run that has not ended (status incomplete or interrupted) also gets its newest checkpoint, so
``streamx sweep <experiment> --budget <b> --out DST`` continues it on another machine or in
another session; finished and diverged runs get none. Nothing else is copied: no older
checkpoints, no SB3 ``model.zip`` and no pickled ``vecnormalize.pkl`` (the newest checkpoint
holds the normalizer statistics). Existing files in DST are replaced, older checkpoints of a run
in DST removed. Prints one line per run.

    python experiments/archive.py --rekey experiments/results/stream_barrier_mujoco/laptop

renames every run directory of an archive to the name ``streamx sweep`` gives that run today
(a hash of the values that decide its results, read from its config.json; fields a run's
config.json lacks take the value they had before the field existed) and updates sweep.json, so
archived runs are skipped or resumed, never re-run, after the way runs are named changes.

The figures of docs/reproduce.md are made from such copies under experiments/results/, so
``streamx plot experiments/results/<experiment>/<budget>`` redraws them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from streamx.outputs import atomic_write_text
from streamx.run import checkpoint_paths
from streamx.sweep import config_hash, run_status

RESULT_FILES = ("config.json", "versions.json", "episodes.csv", "metrics.csv", "summary.json", "prediction.csv",
                "eval.json")


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


def rekey(directory: Path) -> list[tuple[str, str]]:
    """Rename ``directory``'s runs to their current sweep names; returns (old, new) per renamed run."""
    if not directory.is_dir():
        raise SystemExit(f"archive: {directory} is not a directory (pass an archive, e.g. experiments/results/X/full)")
    renamed = {}
    for run_dir in sorted(path for path in directory.iterdir() if (path / "config.json").is_file()):
        key = config_hash(json.loads((run_dir / "config.json").read_text()))
        if key != run_dir.name:
            if (directory / key).exists():
                raise SystemExit(f"archive: {run_dir.name} and {key} are the same run; keep one of them")
            run_dir.rename(directory / key)
            renamed[run_dir.name] = key
    manifest = directory / "sweep.json"
    if renamed and manifest.is_file():
        data = json.loads(manifest.read_text())
        for run in data.get("runs", []):
            run["dir"] = renamed.get(run["dir"], run["dir"])
        atomic_write_text(manifest, json.dumps(data, indent=2) + "\n")
    return sorted(renamed.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a sweep directory, e.g. runs/sweeps/stream_barrier_mujoco/laptop")
    parser.add_argument("target", type=Path, nargs="?",
                        help="e.g. experiments/results/stream_barrier_mujoco/laptop")
    parser.add_argument("--rekey", action="store_true",
                        help="rename SOURCE's runs to the names streamx sweep gives them now (no copy)")
    args = parser.parse_args(argv)
    if args.rekey:
        for old, new in rekey(args.source):
            print(f"{old} -> {new}")
        return 0
    if args.target is None:
        parser.error("pass a TARGET directory to copy into (or --rekey)")
    for run, status, checkpoint in archive(args.source, args.target):
        print(f"{run}  {status}{'  + newest checkpoint' if checkpoint else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

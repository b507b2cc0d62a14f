"""Start and resume training runs: the one entry point above the two training loops.

:func:`train` and :func:`resume` send a stream algorithm's run to the stream loop
(:mod:`streamx.loop`) and a batch baseline's to the Stable-Baselines3 runner
(:mod:`streamx.baselines`); both write the same run directory, with the helpers of
:mod:`streamx.rundir` below them. :func:`resolve_config` builds a run's config from the
defaults, the suite's and the algorithm's values, a preset and overrides.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamx.config import Config, load_yaml
from streamx.envs import suite_defaults
from streamx.errors import CheckpointError, ConfigError
from streamx.loop import StreamTraining
from streamx.provenance import task_mismatch
from streamx.registry import BASELINES, algorithm_class
from streamx.rundir import (
    EpisodeCallback,
    RunResult,
    check_checkpoint_matches,
    checkpoint_paths,
    clear_run_outputs,
    default_run_dir,
    latest_checkpoint,
    load_run_config,
    seed_everything,
    write_checkpoint,
)
from streamx.runlock import LOCK_FILE, run_lock

__all__ = ["RunResult", "checkpoint_paths", "default_run_dir", "latest_checkpoint", "resolve_config", "resume",
           "seed_everything", "train", "write_checkpoint"]


def resolve_config(algo: str, env: str | None = None, preset: str | Path | None = None,
                   overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults → suite defaults for ``env`` → YAML preset → overrides (later wins).

    ``env`` may come from the preset instead; a preset's ``algo``, if any, must match ``algo``.
    """
    Config.from_dict({"algo": algo})  # validate the algorithm name before anything else
    preset_values = load_yaml(preset) if preset is not None else {}
    if preset_values.get("algo", algo) != algo:
        raise ConfigError(f"config file {preset} is a preset for {preset_values['algo']}, not {algo}; "
                          f"run `streamx train {preset_values['algo']} --config {preset}`")
    env = env or preset_values.get("env")
    if not env:
        raise ConfigError("no environment given: pass --env <id> (or a preset that sets env)")
    own = {} if algo in BASELINES else algorithm_class(algo).config_defaults
    values: dict[str, Any] = {"algo": algo, "env": env, **suite_defaults(env, algo, own)}
    if preset is not None:
        values.update({**_fraction_rules(preset_values), "algo": algo, "env": env})
        Config.from_dict(values, source=f"config file {preset}")  # name the file in any error
    values.update(_fraction_rules(dict(overrides or {})))
    return Config.from_dict(values, source="the overrides")


def _fraction_rules(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer (preset or overrides) that sets ``exploration_fraction`` but not ``exploration_steps``
    asks for the fraction: the suite's absolute ε horizon then gives way to it."""
    if "exploration_fraction" in layer and "exploration_steps" not in layer:
        return {**layer, "exploration_steps": None}
    return layer


def train(config: Config, on_episode: EpisodeCallback | None = None) -> RunResult:
    """Train one agent for ``config.total_steps`` steps and write its run directory.

    A batch baseline (``config.algo`` in BASELINES) runs through Stable-Baselines3 instead of
    the stream loop, writing the same result files (``streamx.baselines``).

    The run directory is locked (:mod:`streamx.runlock`) while the run lives: a second process
    that would write it is refused with one line naming this one's PID."""
    config = config.replace(run_dir=str(Path(config.run_dir) if config.run_dir else default_run_dir(config)))
    run_dir = Path(config.run_dir)  # type: ignore[arg-type]
    new_directory = not run_dir.exists()
    try:
        with run_lock(run_dir):
            if config.algo in BASELINES:
                from streamx.baselines import train_baseline

                return train_baseline(config, on_episode)
            return StreamTraining(config, on_episode).run()
    except BaseException:
        # refused before anything was written (e.g. an unknown SB3 hyperparameter): leave no
        # directory behind that holds only the lock file
        if new_directory and run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resume(run_dir: str | Path, on_episode: EpisodeCallback | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its newest valid checkpoint.

    Where the simulator state was saved (MuJoCo, DM Control, classic control, MinAtar, Atari,
    the ETT stream) the run continues mid-episode and is indistinguishable from one that never
    stopped; otherwise it continues at the episode boundary the checkpoint was taken at. A run stopped before its first
    checkpoint starts again from step 0 in its directory (same config and seed, so the same
    episodes), as a sweep restarts it.

    The run directory is locked for the life of the resumed run (:mod:`streamx.runlock`).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        load_run_config(run_dir)  # the one-line error for a directory that is not a run
    with run_lock(run_dir, create=False) as stale:
        if stale is not None:
            print(f"streamx: note: process {stale} ended without releasing {run_dir}; continuing its run",
                  file=sys.stderr, flush=True)
        config = load_run_config(run_dir).replace(run_dir=str(run_dir))  # the directory may have moved
        mismatch = task_mismatch(run_dir)
        if mismatch is not None:  # another simulator would continue another task
            raise ConfigError(mismatch)
        if config.algo in BASELINES:  # an SB3 run: its own checkpoint contents (streamx.baselines)
            from streamx.baselines import resume_baseline

            return resume_baseline(config, on_episode)
        if not checkpoint_paths(run_dir):
            print(f"streamx: warning: {run_dir} has no checkpoint yet; restarting the {config.algo} run from step 0",
                  file=sys.stderr, flush=True)
            clear_run_outputs(run_dir)
            return StreamTraining(config, on_episode).run()
        payload = latest_checkpoint(run_dir)
        check_checkpoint_matches(payload, config, run_dir)
        for name in ("episodes.csv", "metrics.csv"):
            if not (run_dir / name).is_file():
                raise CheckpointError(f"{run_dir / name} is missing, so the run's results cannot be continued; "
                                      "restore the file, or start a new run with another --run-dir")
        return StreamTraining(config, on_episode, payload).run()

"""What every training loop shares, below both of them (the stream loop, :mod:`streamx.loop`,
and the Stable-Baselines3 runner, :mod:`streamx.baselines`): the run result, seeding, the
run directory's checkpoints and config, summary.json and metrics rows, the progress bar and
SIGINT/SIGTERM handling. :mod:`streamx.run` chooses the loop for a run.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamx.checkpoint import load_checkpoint, save_checkpoint
from streamx.config import Config
from streamx.errors import CheckpointError, ConfigError
from streamx.identity import decisive_values

__all__ = ["EpisodeCallback", "RunResult", "StopSignals", "check_checkpoint_matches", "checkpoint_paths",
           "clear_run_outputs", "default_run_dir", "latest_checkpoint", "load_run_config", "log_interval_metrics",
           "progress_bar", "run_summary", "seed_everything", "write_checkpoint"]

EpisodeCallback = Callable[[int, float, int], bool]
"""Called after each episode with (step, return, length); return True to stop training."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    episode_returns: list[float]
    episode_lengths: list[int]
    stopped_early: bool
    agent: Any
    """The trained StreamAgent; for a batch baseline (``streamx.baselines``) the SB3 model."""
    status: str = "finished"
    """finished | stopped_early | interrupted (SIGINT/SIGTERM: checkpointed, resumable) | diverged | failed"""
    signal: int | None = None


def default_run_dir(config: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env.replace("/", "-")
    return Path("runs") / f"{config.label or config.algo}__{env_name}__{config.seed}__{stamp}"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a SLURM allocation), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity on this platform
        return os.cpu_count() or 1


def seed_everything(seed: int, threads: int = 1, flush_denormal: bool = False) -> None:
    """Seed every generator and set the thread's numerics for one run. ``flush_denormal`` (the
    SB3 baselines' default, docs/baselines.md#numerics) makes the CPU treat floats below
    1.2e-38 as 0; it is reset for every run, so a stream-x run in the same process never
    inherits it. More threads than this process may run on are refused (ConfigError): they only
    compete, and a count in the thousands can hang torch's thread pool."""
    usable = usable_cpus()
    if threads > usable:
        raise ConfigError(f"threads={threads} is more than the {usable} CPUs this process may use; set threads to "
                          f"at most {usable} (1, the default, is fastest for one run: run seeds as separate processes)")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)


def progress_bar(config: Config, initial: int = 0) -> Any:
    if not config.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    return tqdm(total=config.total_steps, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0,
                desc=f"{config.algo} {config.env}")


class StopSignals:
    """While active, SIGINT/SIGTERM only set a flag; the loop checkpoints and stops cleanly."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def run_summary(status: str, steps: int, returns: list[float], elapsed: float, resumes: list[Any],
                fault: BaseException | None) -> dict[str, Any]:
    """summary.json of a run (stream or SB3 baseline): the same keys for every run."""
    return {
        "status": status,
        "steps": steps,
        "episodes": len(returns),
        "wall_time": round(elapsed, 3),
        "steps_per_second": steps / max(elapsed, 1e-9),
        "final_mean_return_last_10": float(np.mean(returns[-10:])) if returns else None,
        "resumes": resumes,
        "error": None if fault is None else f"{type(fault).__name__}: {fault}",
    }


def log_interval_metrics(loop: Any, diagnostics: Mapping[str, float]) -> None:
    """Write one metrics.csv row — steps/s since the previous row, the mean of the last 20
    returns, and the learner's ``diagnostics`` — and show the same on the progress bar.

    ``loop`` is a training loop (the stream loop here, or the SB3 recorder of
    ``streamx.baselines``) with ``step``, ``returns``, ``writer``, ``bar``, ``interval_start``
    and ``interval_steps``; the interval restarts at this row."""
    now = time.perf_counter()
    sps = (loop.step - loop.interval_steps) / max(now - loop.interval_start, 1e-9)
    loop.interval_start, loop.interval_steps = now, loop.step
    recent = loop.returns[-20:]
    recent_return = float(np.mean(recent)) if recent else float("nan")
    loop.writer.metric({"step": loop.step, "episodes": len(loop.returns), "recent_return": recent_return,
                        "steps_per_second": sps, **diagnostics})
    if loop.bar is not None:
        loop.bar.set_postfix(sps=f"{sps:,.0f}", ret=f"{recent_return:.1f}", refresh=False)


def check_checkpoint_matches(payload: dict[str, Any], config: Config, run_dir: Path) -> None:
    """Refuse a checkpoint that was not made with ``config``'s settings (another run's, or a run
    whose config.json was edited): every value that decides the results must agree."""
    for key in ("algo", "env"):
        if payload[key] != getattr(config, key):
            raise CheckpointError(
                f"the checkpoint in {run_dir} is for {key}={payload[key]!r} but config.json says "
                f"{getattr(config, key)!r}; resume each run from its own directory"
            )
    try:
        saved = json.loads(payload["config"])
        theirs = decisive_values(Config.from_saved(saved, source="the checkpoint").to_dict())
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError(f"a checkpoint of {run_dir} does not record its settings; "
                              "use a checkpoint that streamx wrote for this run") from None
    ours = decisive_values(config.to_dict())
    differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differing:
        raise CheckpointError(
            f"the checkpoint was made with other settings than {run_dir}/config.json "
            f"({', '.join(f'{k}: {theirs.get(k)!r} vs {ours.get(k)!r}' for k in differing[:3])}); "
            "pass a checkpoint of this run, or restore its config.json"
        )


_RUN_OUTPUTS = ("config.json", "versions.json", "episodes.csv", "metrics.csv", "summary.json", "prediction.json",
                "wandb.json", "tb")


def clear_run_outputs(run_dir: str | Path) -> None:
    """Delete the result files of a run that has no checkpoint yet, so it can start again in its
    directory; the lock file (held by the caller) and anything else in the directory stay."""
    for name in _RUN_OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def load_run_config(run_dir: Path) -> Config:
    path = run_dir / "config.json"
    try:
        values = json.loads(path.read_text())
    except OSError:
        raise ConfigError(f"{run_dir} is not a run directory (no readable config.json); "
                          "pass the directory a `streamx train` run wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not text"
        raise ConfigError(f"{path} is not valid JSON ({reason}); the run directory is damaged") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} holds a JSON {type(values).__name__}, not the run's settings (a JSON object); "
                          "the run directory is damaged — restore config.json")
    return Config.from_saved(values, source=str(path))


_CHECKPOINT_NAME = re.compile(r"step_\d{12}\.ckpt")


def checkpoint_paths(run_dir: str | Path) -> list[Path]:
    """The run's checkpoint files (exactly the names :func:`write_checkpoint` gives,
    ``step_<12 digits>.ckpt``; other files in checkpoints/ are not the run's), oldest first."""
    return sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*.ckpt") if _CHECKPOINT_NAME.fullmatch(p.name))


def write_checkpoint(run_dir: str | Path, step: int, payload: dict[str, Any], keep: int) -> Path:
    """Write ``payload`` as the checkpoint of ``step`` in ``run_dir``/checkpoints and delete all
    but the newest ``keep``; return its path."""
    directory = Path(run_dir) / "checkpoints"
    path = directory / f"step_{step:012d}.ckpt"
    try:
        directory.mkdir(exist_ok=True)
        save_checkpoint(path, payload)
        for old in checkpoint_paths(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        kept = checkpoint_paths(run_dir) if directory.is_dir() else []
        newest = f"the newest checkpoint is {kept[-1].name}" if kept else "no checkpoint was written"
        raise CheckpointError(f"cannot write checkpoint {path} ({exc.strerror or exc}); {newest} — make "
                              f"{directory} writable (or free space) and resume") from None
    return path


def latest_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """The newest checkpoint of a run that loads and verifies (a damaged newest file falls
    back to the one before it, with a warning)."""
    paths = checkpoint_paths(run_dir)
    if not paths:
        raise CheckpointError(f"{run_dir} has no checkpoints to resume from; start a new run instead")
    errors = []
    for path in reversed(paths):
        try:
            payload = load_checkpoint(path)
        except CheckpointError as exc:
            errors.append(str(exc))
            continue
        for message in errors:
            print(f"streamx: warning: skipped a damaged checkpoint: {message}", file=sys.stderr)
        return payload
    raise CheckpointError(f"none of the {len(paths)} checkpoints in {run_dir} could be loaded "
                          f"(newest: {errors[0]}); start a new run")

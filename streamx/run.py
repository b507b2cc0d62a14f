"""The ONE training loop, shared by every algorithm and suite:

    env → agent.act → env.step → agent.update → log → (episode end: record, reset)

Seeding: python, numpy and torch global RNGs, the agent's own generators, the environment
and its action space all derive from ``config.seed``, and runs use one torch thread by
default, so the same seed reproduces the same run on CPU.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import sys
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from streamx import __version__
from streamx.agents import StreamAgent, build_agent
from streamx.checkpoint import (
    FORMAT_VERSION,
    env_state,
    global_rng_state,
    learner_state_faults,
    load_checkpoint,
    restore_env_state,
    restore_global_rng_state,
    save_checkpoint,
)
from streamx.config import BASELINES, Config, decisive_values, load_yaml
from streamx.envs import make_env, resets_only_at_game_over, suite_defaults
from streamx.errors import CheckpointError, ConfigError, EnvironmentFault, InputError, NonFiniteError
from streamx.outputs import RunWriter
from streamx.prediction import discounted_returns, prediction_report
from streamx.registry import algorithm_class
from streamx.runlock import LOCK_FILE, run_lock

__all__ = ["RunResult", "checkpoint_paths", "default_run_dir", "latest_checkpoint", "resolve_config", "resume",
           "seed_everything", "train", "write_checkpoint"]

EpisodeCallback = Callable[[int, float, int], bool]
"""Called after each episode with (step, return, length); return True to stop training."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    episode_returns: list[float]
    episode_lengths: list[int]
    stopped_early: bool
    agent: StreamAgent | Any
    """The trained StreamAgent; for a batch baseline (``streamx.baselines``) the SB3 model."""
    status: str = "finished"
    """finished | stopped_early | interrupted (SIGINT/SIGTERM: checkpointed, resumable) | diverged | failed"""
    signal: int | None = None


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


def default_run_dir(config: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env.replace("/", "-")
    return Path("runs") / f"{config.label or config.algo}__{env_name}__{config.seed}__{stamp}"


def seed_everything(seed: int, threads: int = 1, flush_denormal: bool = False) -> None:
    """Seed every generator and set the thread's numerics for one run. ``flush_denormal`` (the
    SB3 baselines' default, docs/baselines.md#numerics) makes the CPU treat floats below
    1.2e-38 as 0; it is reset for every run, so a stream-x run in the same process never
    inherits it."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)


class _PredictionRecord:
    """For Stream TD: v(s_t), δ_t, the reward the agent saw and episode ends, every step, so
    predictions can be scored against the true discounted returns once the stream is over."""

    def __init__(self) -> None:
        self.predictions = array("d")
        self.td_errors = array("d")
        self.rewards = array("d")
        self.ends = array("b")

    def add(self, metrics: Mapping[str, float], reward: float, episode_end: bool) -> None:
        self.predictions.append(metrics["prediction"])
        self.td_errors.append(metrics["td_error"])
        self.rewards.append(reward)
        self.ends.append(episode_end)

    def state_dict(self) -> dict[str, Any]:
        return {"predictions": torch.tensor(self.predictions, dtype=torch.float64),
                "td_errors": torch.tensor(self.td_errors, dtype=torch.float64),
                "rewards": torch.tensor(self.rewards, dtype=torch.float64),
                "ends": torch.tensor(self.ends, dtype=torch.int8)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.predictions = array("d", state["predictions"].tolist())
        self.td_errors = array("d", state["td_errors"].tolist())
        self.rewards = array("d", state["rewards"].tolist())
        self.ends = array("b", state["ends"].tolist())

    def report(self, gamma: float) -> dict[str, Any] | None:
        ends = np.frombuffer(self.ends, dtype=np.int8).astype(bool)
        if not ends.any():
            return None  # no finished episode: its true return is unknown
        n = int(np.flatnonzero(ends)[-1]) + 1  # only steps whose episode finished
        returns = discounted_returns(np.asarray(self.rewards[:n]), gamma, ends[:n])
        return {"gamma": gamma, **prediction_report(np.asarray(self.predictions[:n]), returns,
                                                     np.asarray(self.td_errors[:n]))}


class _IntervalStats:
    """Per-step diagnostics kept as plain floats and summarized every log interval."""

    def __init__(self, extra_metrics: tuple[str, ...]):
        self.keys = ("td_error", "effective_step_size", "trace_norm", *extra_metrics)
        self.extra_metrics = extra_metrics
        self.values: dict[str, list[float]] = {key: [] for key in self.keys}

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f"{key}_mean" for key in self.extra_metrics)

    def __len__(self) -> int:
        return len(self.values["td_error"])

    def add(self, metrics: Mapping[str, float]) -> None:
        for key in self.keys:
            self.values[key].append(metrics[key])

    def summarize(self) -> dict[str, float]:
        v = {key: np.asarray(values) for key, values in self.values.items()}
        out = {
            "td_error_abs_mean": float(np.abs(v["td_error"]).mean()),
            "td_error_rms": float(np.sqrt((v["td_error"] ** 2).mean())),
            "effective_step_size_mean": float(v["effective_step_size"].mean()),
            "effective_step_size_min": float(v["effective_step_size"].min()),
            "trace_norm_mean": float(v["trace_norm"].mean()),
            **{f"{key}_mean": float(v[key].mean()) for key in self.extra_metrics},
        }
        self.values = {key: [] for key in self.keys}
        return out


def _progress_bar(config: Config, initial: int = 0) -> Any:
    if not config.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    return tqdm(total=config.total_steps, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0,
                desc=f"{config.algo} {config.env}")


class _StopSignals:
    """While active, SIGINT/SIGTERM only set a flag; the loop checkpoints and stops cleanly."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
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
            return _Training(config, on_episode).run()
    except BaseException:
        # refused before anything was written (e.g. an unknown SB3 hyperparameter): leave no
        # directory behind that holds only the lock file
        if new_directory and run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resume(run_dir: str | Path, on_episode: EpisodeCallback | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its newest valid checkpoint.

    Where the simulator state was saved (MuJoCo, classic control) the run continues
    mid-episode and is indistinguishable from one that never stopped; otherwise it continues
    at the episode boundary the checkpoint was taken at. A run stopped before its first
    checkpoint starts again from step 0 in its directory (same config and seed, so the same
    episodes), as a sweep restarts it.

    The run directory is locked for the life of the resumed run (:mod:`streamx.runlock`).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        _load_run_config(run_dir)  # the one-line error for a directory that is not a run
    with run_lock(run_dir, create=False) as stale:
        if stale is not None:
            print(f"streamx: note: process {stale} ended without releasing {run_dir}; continuing its run",
                  file=sys.stderr, flush=True)
        config = _load_run_config(run_dir).replace(run_dir=str(run_dir))  # the directory may have moved
        if config.algo in BASELINES:  # an SB3 run: its own checkpoint contents (streamx.baselines)
            from streamx.baselines import resume_baseline

            return resume_baseline(config, on_episode)
        if not checkpoint_paths(run_dir):
            print(f"streamx: warning: {run_dir} has no checkpoint yet; restarting the {config.algo} run from step 0",
                  file=sys.stderr, flush=True)
            clear_run_outputs(run_dir)
            return _Training(config, on_episode).run()
        payload = latest_checkpoint(run_dir)
        check_checkpoint_matches(payload, config, run_dir)
        for name in ("episodes.csv", "metrics.csv"):
            if not (run_dir / name).is_file():
                raise CheckpointError(f"{run_dir / name} is missing, so the run's results cannot be continued; "
                                      "restore the file, or start a new run with another --run-dir")
        return _Training(config, on_episode, payload).run()


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


_RUN_OUTPUTS = ("config.json", "episodes.csv", "metrics.csv", "summary.json", "prediction.json", "wandb.json", "tb")


def clear_run_outputs(run_dir: str | Path) -> None:
    """Delete the result files of a run that has no checkpoint yet, so it can start again in its
    directory; the lock file (held by the caller) and anything else in the directory stay."""
    for name in _RUN_OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _load_run_config(run_dir: Path) -> Config:
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


class _Training:
    """The state of one training run: the loop, its bookkeeping and its checkpoints."""

    def __init__(self, config: Config, on_episode: EpisodeCallback | None,
                 resume_from: dict[str, Any] | None = None):
        self.config = config
        self.on_episode = on_episode
        seed_everything(config.seed, config.threads)
        self.env = make_env(config)
        self.agent = build_agent(config, self.env.observation_space, self.env.action_space)
        self.env.action_space.seed(config.seed)
        self.run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
        self.stats = _IntervalStats(self.agent.extra_metrics)
        # A data stream such as the ETT series is learned in one pass: stop when it ends.
        self.single_pass = bool(getattr(self.env.unwrapped, "single_pass", False))
        # A prediction algorithm (its update reports "prediction") is scored against the true returns.
        self.record = _PredictionRecord() if "prediction" in self.agent.extra_metrics else None
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.step = 0
        self.interval_steps = 0
        self.elapsed_before = 0.0  # wall time of earlier sessions of this run
        self.resumes: list[dict[str, Any]] = []
        self.checkpoint_pending = False
        self.resume_from = resume_from
        self._check_disk_space()
        if resume_from is None:
            resolved = config.replace(run_dir=str(self.run_dir))
            self.writer = RunWriter(self.run_dir, resolved.to_dict(), extra_fields=self.stats.fields,
                                    tensorboard=config.tensorboard, wandb=config.wandb,
                                    wandb_project=config.wandb_project, wandb_entity=config.wandb_entity,
                                    wandb_group=config.wandb_group)
        else:
            self.writer = RunWriter.reopen(self.run_dir, extra_fields=self.stats.fields,
                                           episode_rows=resume_from["loop"]["episode_rows"],
                                           metric_rows=resume_from["loop"]["metric_rows"],
                                           tensorboard=config.tensorboard, step=int(resume_from["loop"]["step"]),
                                           wandb=config.wandb, wandb_project=config.wandb_project,
                                           wandb_entity=config.wandb_entity, wandb_group=config.wandb_group)
        (self.run_dir / "checkpoints").mkdir(exist_ok=True)

    # -- checkpoints ------------------------------------------------------------------------
    def _check_disk_space(self) -> None:
        parameters = sum(p.numel() for net in self.agent.networks.values() for p in net.parameters())
        needed = (4 * parameters * 4 + 1_000_000) * (self.config.keep_checkpoints + 1)
        existing = next(p for p in (self.run_dir, *self.run_dir.resolve().parents) if p.exists())
        free = shutil.disk_usage(existing).free
        if free < needed:
            raise ConfigError(f"only {free / 1e6:.1f} MB free at {self.run_dir}; checkpoints need about "
                              f"{needed / 1e6:.1f} MB: free space or choose another --run-dir")

    def _payload(self, obs: Any, mid_episode: bool) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "streamx_version": __version__,
            "algo": self.config.algo,
            "env": self.config.env,
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "agent": self.agent.state_dict(),
            "env_state": env_state(self.env),
            "rng": global_rng_state(),
            "loop": {
                "step": self.step,
                "mid_episode": mid_episode,
                "obs": torch.from_numpy(np.array(obs, dtype=np.float32)),
                "returns": torch.tensor(self.returns, dtype=torch.float64),
                "lengths": torch.tensor(self.lengths, dtype=torch.int64),
                "episode_rows": len(self.returns),
                "metric_rows": self.writer.metric_rows,
                "interval_steps": self.interval_steps,
                "interval_values": {k: torch.tensor(v, dtype=torch.float64) for k, v in self.stats.values.items()},
                "prediction_record": self.record.state_dict() if self.record is not None else None,
                "elapsed": self.elapsed_before + (time.perf_counter() - self.start),
                "resumes": self.resumes,
            },
        }

    def save_checkpoint(self, obs: Any, mid_episode: bool) -> Path:
        """Write a checkpoint of the current state — only a good one: a learner state with a
        NaN/inf (parameters, traces, normalizer statistics) is never written (NonFiniteError)."""
        payload = self._payload(obs, mid_episode)
        faults = learner_state_faults(payload)
        if faults:
            raise NonFiniteError(f"{self.config.algo}: the learner's state is no longer finite ({', '.join(faults)}): "
                                 "it diverged — lower lr or keep the stream-x stabilizers (optimizer=obgd)")
        path = write_checkpoint(self.run_dir, self.step, payload, self.config.keep_checkpoints)
        self.checkpoint_pending = False
        return path

    def _last_good_state(self, obs: Any) -> str:
        """Where the run's newest good state is, after a fault: saved now when the learner's
        state is still finite, else the newest checkpoint already written (never a bad one)."""
        try:
            return f"last good state saved to {self.save_checkpoint(obs, mid_episode=False)}"
        except CheckpointError as exc:
            return f"and its state could not be saved: {exc}"
        except NonFiniteError:
            kept = checkpoint_paths(self.run_dir)
            if not kept:
                return "the learner's state is not finite and no good checkpoint was written before"
            step = int(kept[-1].stem.split("_")[1])
            return (f"the learner's state is not finite, so it was not saved; the last good state is {kept[-1]} "
                    f"(step {step})")

    def _restore(self, payload: dict[str, Any]) -> Any:
        """Load a checkpoint into the freshly built agent and env; return the observation to act on."""
        loop = payload["loop"]
        self.agent.load_state_dict(payload["agent"])
        mid_episode = bool(loop["mid_episode"]) and bool(payload["env_state"]["exact"])
        restore_env_state(self.env, payload["env_state"], mid_episode=mid_episode)
        restore_global_rng_state(payload["rng"])
        self.step = int(loop["step"])
        self.returns = [float(x) for x in loop["returns"].tolist()]
        self.lengths = [int(x) for x in loop["lengths"].tolist()]
        self.interval_steps = int(loop["interval_steps"])
        self.stats.values = {k: [float(x) for x in v.tolist()] for k, v in loop["interval_values"].items()}
        if self.record is not None and loop["prediction_record"] is not None:
            self.record.load_state_dict(loop["prediction_record"])
        self.elapsed_before = float(loop["elapsed"])
        self.resumes = [*loop["resumes"], {"step": self.step, "mid_episode": mid_episode}]
        if mid_episode:
            return loop["obs"].numpy()
        # The simulator state could not be saved (or was unusable): continue at a new episode,
        # as after any episode end — traces and a pending SARSA action do not carry over.
        self.agent.end_episode()
        obs, _ = self.env.reset()
        return obs

    # -- the loop ---------------------------------------------------------------------------
    def _log_metrics(self) -> None:
        log_interval_metrics(self, self.stats.summarize())

    def run(self) -> RunResult:
        config, env, agent = self.config, self.env, self.agent
        self.start = self.interval_start = time.perf_counter()
        exact = env_state(env)["exact"] if config.checkpoint_interval else True
        status, stopped_early, fault = "failed", False, None
        continuous = isinstance(env.action_space, gym.spaces.Box)
        obs: Any = None
        episode_over = False  # the loop stopped right after an episode end, before the reset
        # Atari with life_loss=continue (the paper's loop, docs/atari.md): a lost life is terminal for the
        # learner but the same game goes on; the env resets only when the game is over (the innermost
        # statistics wrapper reports it in info["episode"]), and the learner never sees truncation.
        whole_games = resets_only_at_game_over(config)
        with _StopSignals() as signals:
            try:
                if self.resume_from is not None:
                    obs = self._restore(self.resume_from)
                else:
                    obs, _ = env.reset(seed=config.seed)
                self.bar = _progress_bar(config, initial=self.step)
                while self.step < config.total_steps:
                    self.step += 1
                    step = self.step
                    action = agent.act(obs)
                    if continuous and not np.isfinite(action).all():
                        raise NonFiniteError(
                            f"{config.algo}: the policy produced a non-finite action ({action}): its weights "
                            "diverged — lower lr or keep the stream-x stabilizers (optimizer=obgd)")
                    next_obs, reward, terminated, truncated, info = env.step(action)
                    metrics = agent.update(obs, action, float(reward), next_obs, terminated,
                                           False if whole_games else truncated)
                    self.stats.add(metrics)
                    if self.record is not None:
                        # the TD target's episode end: truncation counts only without bootstrapping
                        self.record.add(metrics, float(reward),
                                        terminated or (truncated and not config.bootstrap_on_truncation))
                    obs = next_obs
                    if "episode" in info:  # a whole episode (for Atari: a whole game, not one life) ended
                        episode_return = float(info["episode"]["r"])
                        episode_length = int(info["episode"]["l"])
                        self.returns.append(episode_return)
                        self.lengths.append(episode_length)
                        self.writer.episode(step, episode_return, episode_length,
                                            self.elapsed_before + time.perf_counter() - self.start)
                        if self.on_episode is not None and self.on_episode(step, episode_return, episode_length):
                            stopped_early = True
                    if step % config.log_interval == 0:
                        self._log_metrics()
                    if config.checkpoint_interval and step % config.checkpoint_interval == 0:
                        self.checkpoint_pending = True
                    if ("episode" in info) if whole_games else (terminated or truncated):  # reset the env
                        if self.single_pass or stopped_early:
                            episode_over = True
                            break
                        if self.checkpoint_pending and not exact and "episode" in info:
                            self.save_checkpoint(obs, mid_episode=False)  # at the game's end, before reset
                        obs, _ = env.reset()
                    if self.checkpoint_pending and exact:
                        self.save_checkpoint(obs, mid_episode=True)
                    if stopped_early:
                        break
                    if signals.received is not None:
                        break
                    if self.bar is not None and step % 1000 == 0:
                        self.bar.update(1000)
                if signals.received is not None:
                    status = "interrupted"
                else:
                    if len(self.stats):
                        self._log_metrics()  # the last, partial interval
                    if self.record is not None and (report := self.record.report(config.gamma)) is not None:
                        self.writer.prediction_report(report)
                    status = "stopped_early" if stopped_early else "finished"
                self.save_checkpoint(obs, mid_episode=not episode_over)
            except (EnvironmentFault, NonFiniteError, InputError) as exc:
                # The agent and the normalizers never learned from the bad value: keep them. The
                # simulator may hold the bad state, so a resume starts a new episode. An input the
                # agent refused came from the environment (the loop passes it the env's outputs).
                if isinstance(exc, InputError):
                    exc = EnvironmentFault(f"environment {config.env} returned data the agent cannot use: {exc}; "
                                           "fix the environment (its outputs must match its declared spaces)")
                if isinstance(exc, NonFiniteError):  # the learner diverged: an outcome of the run
                    status = "diverged"
                fault = type(exc)(f"{exc} (step {self.step}; {self._last_good_state(obs)})")
                raise fault from None
            except BaseException as exc:
                fault = exc  # recorded in summary.json; results written so far stay
                raise
            finally:
                self._finish(status, fault)
        return RunResult(self.run_dir, self.step, self.returns, self.lengths, stopped_early, agent,
                         status=status, signal=signals.received)

    def _finish(self, status: str, fault: Exception | None) -> None:
        elapsed = self.elapsed_before + time.perf_counter() - self.start
        if getattr(self, "bar", None) is not None:
            self.bar.close()
        self.writer.summary(run_summary(status, self.step, self.returns, elapsed, self.resumes, fault))
        self.writer.close()
        self.env.close()

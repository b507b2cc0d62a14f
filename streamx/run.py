"""The ONE training loop, shared by every algorithm and suite:

    env → agent.act → env.step → agent.update → log → (episode end: record, reset)

Seeding: python, numpy and torch global RNGs, the agent's own generators, the environment
and its action space all derive from ``config.seed``, and runs use one torch thread by
default, so the same seed reproduces the same run on CPU.
"""

from __future__ import annotations

import random
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamx.agents import AGENTS, StreamAgent
from streamx.config import Config, load_yaml
from streamx.envs import make_env, suite_defaults
from streamx.errors import ConfigError
from streamx.outputs import RunWriter
from streamx.prediction import discounted_returns, prediction_report

__all__ = ["RunResult", "default_run_dir", "resolve_config", "seed_everything", "train"]

EpisodeCallback = Callable[[int, float, int], bool]
"""Called after each episode with (step, return, length); return True to stop training."""


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    episode_returns: list[float]
    episode_lengths: list[int]
    stopped_early: bool
    agent: StreamAgent


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
    values: dict[str, Any] = {"algo": algo, "env": env, **suite_defaults(env, algo)}
    if preset is not None:
        values.update({**preset_values, "algo": algo, "env": env})
        Config.from_dict(values, source=f"config file {preset}")  # name the file in any error
    values.update(overrides or {})
    return Config.from_dict(values, source="the overrides")


def default_run_dir(config: Config) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env.replace("/", "-")
    return Path("runs") / f"{config.algo}__{env_name}__{config.seed}__{stamp}"


def seed_everything(seed: int, threads: int = 1) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


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


def _progress_bar(config: Config) -> Any:
    if not config.progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        return None
    return tqdm(total=config.total_steps, unit="step", dynamic_ncols=True, mininterval=1.0,
                desc=f"{config.algo} {config.env}")


def train(config: Config, on_episode: EpisodeCallback | None = None) -> RunResult:
    """Train one agent for ``config.total_steps`` steps and write its run directory."""
    seed_everything(config.seed, config.threads)
    env = make_env(config)
    agent = AGENTS[config.algo](env.observation_space, env.action_space, config)
    env.action_space.seed(config.seed)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    resolved = config.replace(run_dir=str(run_dir))
    stats = _IntervalStats(agent.extra_metrics)
    writer = RunWriter(run_dir, resolved.to_dict(), extra_fields=stats.fields, tensorboard=config.tensorboard)

    returns: list[float] = []
    lengths: list[int] = []
    recent: deque[float] = deque(maxlen=20)
    bar = _progress_bar(config)
    stopped_early = False
    status = "failed"
    start = interval_start = time.perf_counter()
    interval_steps = 0
    step = 0

    def log_metrics() -> None:
        nonlocal interval_start, interval_steps
        now = time.perf_counter()
        sps = (step - interval_steps) / max(now - interval_start, 1e-9)
        interval_start, interval_steps = now, step
        recent_return = float(np.mean(recent)) if recent else float("nan")
        writer.metric({"step": step, "episodes": len(returns), "recent_return": recent_return,
                       "steps_per_second": sps, **stats.summarize()})
        if bar is not None:
            bar.set_postfix(sps=f"{sps:,.0f}", ret=f"{recent_return:.1f}", refresh=False)

    # A data stream such as the ETT series is learned in one pass: stop when it ends.
    single_pass = bool(getattr(env.unwrapped, "single_pass", False))
    record = _PredictionRecord() if config.algo == "stream_td" else None
    try:
        obs, _ = env.reset(seed=config.seed)
        for step in range(1, config.total_steps + 1):
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, info = env.step(action)
            metrics = agent.update(obs, action, float(reward), next_obs, terminated, truncated)
            stats.add(metrics)
            if record is not None:
                # the TD target's episode end: truncation counts only without bootstrapping
                record.add(metrics, float(reward), terminated or (truncated and not config.bootstrap_on_truncation))
            obs = next_obs
            if "episode" in info:  # a whole episode (for Atari: a whole game, not one life) ended
                episode_return = float(info["episode"]["r"])
                episode_length = int(info["episode"]["l"])
                returns.append(episode_return)
                lengths.append(episode_length)
                recent.append(episode_return)
                writer.episode(step, episode_return, episode_length, time.perf_counter() - start)
                if on_episode is not None and on_episode(step, episode_return, episode_length):
                    stopped_early = True
            if terminated or truncated:  # the learner's episode ended (Atari: possibly a life)
                if single_pass:
                    break
                obs, _ = env.reset()
            if stopped_early:
                break
            if step % config.log_interval == 0:
                log_metrics()
            if bar is not None and step % 1000 == 0:
                bar.update(1000)
        if len(stats):
            log_metrics()  # the last, partial interval
        if record is not None and (report := record.report(config.gamma)) is not None:
            writer.prediction_report(report)
        status = "stopped_early" if stopped_early else "finished"
    finally:
        elapsed = time.perf_counter() - start
        if bar is not None:
            bar.close()
        writer.summary({
            "status": status,
            "steps": step,
            "episodes": len(returns),
            "wall_time": round(elapsed, 3),
            "steps_per_second": step / max(elapsed, 1e-9),
            "final_mean_return_last_10": float(np.mean(returns[-10:])) if returns else None,
        })
        writer.close()
        env.close()
    return RunResult(run_dir, step, returns, lengths, stopped_early, agent)

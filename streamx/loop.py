"""The stream loop, shared by every stream algorithm and suite:

    env → agent.act → env.step → agent.update → log → (episode end: record, reset)

Seeding: python, numpy and torch global RNGs, the agent's own generators, the environment
and its action space all derive from ``config.seed``, and runs use one torch thread by
default, so the same seed reproduces the same run on CPU. :mod:`streamx.run` starts and
resumes runs (and sends batch baselines to :mod:`streamx.baselines` instead).
"""

from __future__ import annotations

import json
import shutil
import time
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from streamx import __version__
from streamx.agents import build_agent
from streamx.checkpoint import (
    FORMAT_VERSION,
    continues_mid_episode,
    env_state,
    global_rng_state,
    learner_state_faults,
    restore_env_state,
    restore_global_rng_state,
)
from streamx.config import Config
from streamx.envs import make_env, resets_only_at_game_over, suite_of
from streamx.errors import CheckpointError, ConfigError, EnvironmentFault, InputError, NonFiniteError
from streamx.outputs import RunWriter
from streamx.prediction import discounted_returns, prediction_report
from streamx.provenance import versions_record
from streamx.rundir import (
    EpisodeCallback,
    RunResult,
    StopSignals,
    checkpoint_paths,
    default_run_dir,
    log_interval_metrics,
    progress_bar,
    run_summary,
    seed_everything,
    write_checkpoint,
)

__all__ = ["StreamTraining", "TrustedInput"]

_FLOAT32 = np.dtype(np.float32)


class TrustedInput:
    """The loop's one check of what it hands the agent, so that the agent's own argument checks
    (:mod:`streamx.validation`, for callers of ``act``/``update``) are not made a second time.

    The environment's outputs were checked where they enter, by the
    :class:`~streamx.wrappers.CheckFinite` wrapper right above the environment (the declared
    shape, numbers, finite values, one finite reward); the wrappers above it are streamx's own.
    Atari has no CheckFinite: streamx's own wrappers read ALE's uint8 frames and integer rewards
    directly (:mod:`streamx.atari`).
    What is left is to hand the agent a C-contiguous float32 array of the observation space's
    exact shape — verified here, as the compiled kernels require — and its own action back."""

    def __init__(self, observation_space: gym.spaces.Space, who: str):
        self.shape = tuple(getattr(observation_space, "shape", None) or ())
        self.who = who

    def __call__(self, obs: Any) -> np.ndarray:
        if type(obs) is np.ndarray and obs.dtype is _FLOAT32 and obs.shape == self.shape and obs.flags.c_contiguous:
            return obs
        array = np.ascontiguousarray(obs, dtype=np.float32)
        if array.shape != self.shape:
            raise EnvironmentFault(f"the observation handed to {self.who} has shape {array.shape}, not the "
                                   f"observation space's {self.shape}; the environment's wrappers changed it")
        return array


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


class StreamTraining:
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
                                    wandb_group=config.wandb_group, versions=versions_record(suite_of(config.env)))
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
        mid_episode = bool(loop["mid_episode"]) and continues_mid_episode(self.env, payload["env_state"])
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
    def _record_episode(self, step: int, episode: Mapping[str, Any]) -> bool:
        """Write a finished episode's row; whether the ``on_episode`` callback asks to stop."""
        episode_return, episode_length = float(episode["r"]), int(episode["l"])
        self.returns.append(episode_return)
        self.lengths.append(episode_length)
        wall_time = self.elapsed_before + time.perf_counter() - self.start
        self.writer.episode(step, episode_return, episode_length, wall_time)
        return self.on_episode is not None and bool(self.on_episode(step, episode_return, episode_length))

    def _log_metrics(self) -> None:
        log_interval_metrics(self, self.stats.summarize())

    def run(self) -> RunResult:
        config, env, agent = self.config, self.env, self.agent
        self.start = self.interval_start = time.perf_counter()
        status, stopped_early = "failed", False
        fault: BaseException | None = None
        continuous = isinstance(env.action_space, gym.spaces.Box)
        obs: Any = None
        episode_over = False  # the loop stopped right after an episode end, before the reset
        # Atari with life_loss=continue (the paper's loop, docs/atari.md): a lost life is terminal for the
        # learner but the same game goes on; the env resets only when the game is over (the innermost
        # statistics wrapper reports it in info["episode"]), and the learner never sees truncation.
        whole_games = resets_only_at_game_over(config)
        # CheckFinite checked the env's outputs; the agent's unchecked _act/_update take them from here
        trusted, act, learn = TrustedInput(env.observation_space, config.algo), agent._act, agent._update
        with StopSignals() as signals:
            try:
                if self.resume_from is not None:
                    obs = trusted(self._restore(self.resume_from))
                else:
                    obs = trusted(env.reset(seed=config.seed)[0])
                # after the first reset: some simulators (a DM Control task that edits its model) tell only then
                exact = env_state(env)["exact"] if config.checkpoint_interval else True
                self.bar = progress_bar(config, initial=self.step)
                while self.step < config.total_steps:
                    self.step += 1
                    step = self.step
                    action = act(obs, False)
                    if continuous and not np.isfinite(action).all():
                        raise NonFiniteError(
                            f"{config.algo}: the policy produced a non-finite action ({action}): its weights "
                            "diverged — lower lr or keep the stream-x stabilizers (optimizer=obgd)")
                    next_obs, reward, terminated, truncated, info = env.step(action)
                    next_obs = trusted(next_obs)
                    metrics = learn(obs, action, float(reward), next_obs, bool(terminated),
                                    False if whole_games else bool(truncated))
                    self.stats.add(metrics)
                    if self.record is not None:
                        # the TD target's episode end: truncation counts only without bootstrapping
                        self.record.add(metrics, float(reward),
                                        terminated or (truncated and not config.bootstrap_on_truncation))
                    obs = next_obs
                    if "episode" in info:  # a whole episode (for Atari: a whole game, not one life) ended
                        stopped_early = self._record_episode(step, info["episode"])
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
                        if whole_games and not terminated:  # the frame cap: the learner's episode goes on
                            agent.env_restarted()
                        obs, reset_info = env.reset()
                        obs = trusted(obs)
                        # an Atari game that ended inside the reset sequence (after a lost life with
                        # life_loss=reset: the continuing NOOP, FIRE or action 2) is reported by the reset
                        if "episode" in reset_info and self._record_episode(step, reset_info["episode"]):
                            stopped_early = True
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

    def _finish(self, status: str, fault: BaseException | None) -> None:
        elapsed = self.elapsed_before + time.perf_counter() - self.start
        if getattr(self, "bar", None) is not None:
            self.bar.close()
        self.writer.summary(run_summary(status, self.step, self.returns, elapsed, self.resumes, fault))
        self.writer.close()
        self.env.close()

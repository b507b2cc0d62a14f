"""Evaluation of a trained run and export of its policy.

``evaluate(run_dir)`` rebuilds the run's environment and agent from its newest (or a given)
checkpoint, FREEZES the normalizer statistics (they are used but no longer updated), and runs
the greedy / mean-action policy for whole episodes, writing ``eval.json``.

``export_policy(run_dir, out)`` writes what acting needs — the acting network's weights, the
observation normalizer's statistics and the time-feature horizon — as plain tensors and
strings (``torch.load(weights_only=True)``). :class:`Policy` loads such a file and acts without
any of the training machinery (no optimizer, no traces, no environment wrappers).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from streamx.agents import build_agent
from streamx.agents.base import StreamAgent, build_network
from streamx.checkpoint import (
    MAGIC,
    learner_state_faults,
    load_checkpoint,
    restore_env_state,
    to_plain,
    unsafe_load_reason,
)
from streamx.config import Config
from streamx.envs import make_env, resets_only_at_game_over
from streamx.errors import CheckpointError, ConfigError, InputError, StreamxError
from streamx.outputs import atomic_write_bytes, atomic_write_text
from streamx.registry import algorithm_class
from streamx.rundir import check_checkpoint_matches, latest_checkpoint, load_run_config, seed_everything
from streamx.validation import ArrayCheck
from streamx.wrappers import AddTimeFeature, NormalizeObservation, ScaleReward, find_wrapper

__all__ = ["POLICY_FORMAT", "Policy", "evaluate", "export_policy"]

POLICY_FORMAT = "streamx-policy-v1"


def _acting_network(config: Config, what: str) -> str:
    """The algorithm's acting network (its class declares it); a prediction algorithm has none."""
    network = algorithm_class(config.algo).acting_network
    if network is None:
        raise ConfigError(f"{config.algo} learns predictions, not a policy: {what}")
    return network


def _load(run_dir: Path, checkpoint: str | Path | None) -> tuple[Config, dict[str, Any]]:
    config = load_run_config(run_dir)
    payload = load_checkpoint(checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
    if payload["algo"] != config.algo or payload["env"] != config.env:
        raise CheckpointError(f"the checkpoint is for {payload['algo']} on {payload['env']}, the run directory for "
                              f"{config.algo} on {config.env}; pass a checkpoint of this run")
    check_checkpoint_matches(payload, config, run_dir)  # another run's checkpoint (or architecture) is refused
    faults = learner_state_faults(payload)
    if faults:
        step = payload.get("loop", {}).get("step", "?")
        raise CheckpointError(f"the checkpoint of step {step} holds non-finite weights or statistics "
                              f"({', '.join(faults)}); pass an earlier checkpoint with --checkpoint")
    return config, payload


def evaluate(run_dir: str | Path, episodes: int = 10, checkpoint: str | Path | None = None,
             video: bool = False, seed_offset: int = 1_000_003, epsilon: float = 0.0) -> dict[str, Any]:
    """Run the deterministic policy of a checkpoint for ``episodes`` whole episodes; with
    ``epsilon`` > 0 (discrete actions only), each action is instead a uniformly random one with
    probability ``epsilon`` (ε-greedy evaluation, as Atari evaluations often use)."""
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: evaluate at least one episode")
    if not 0.0 <= epsilon <= 1.0:  # NaN fails too
        raise ConfigError(f"--epsilon {epsilon}: give a probability between 0 and 1 (0: the deterministic policy)")
    run_dir = Path(run_dir)
    config, payload = _load(run_dir, checkpoint)
    _acting_network(config, "there is nothing to evaluate; see prediction.json in its run directory")
    eval_seed = (config.seed + seed_offset) % 2**32  # seeds lie in [0, 2**32)
    seed_everything(eval_seed, config.threads)
    if video:
        config = config.replace(env_kwargs={**config.env_kwargs, "render_mode": "rgb_array"})
    env = make_env(config)
    if epsilon > 0 and not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise ConfigError(f"--epsilon {epsilon} draws random actions from a discrete action space, but "
                          f"{config.env}'s is {env.action_space}; evaluate it without --epsilon")
    restore_env_state(env, payload["env_state"], mid_episode=False)
    for wrapper_type in (NormalizeObservation, ScaleReward):
        wrapper = find_wrapper(env, wrapper_type)
        if wrapper is not None:
            wrapper.frozen = True
    if video:
        try:
            import moviepy  # noqa: F401
        except ImportError:
            raise ConfigError("--video needs the video extra: pip install 'streamx-rl[video]'") from None
        env = gym.wrappers.RecordVideo(env, str(run_dir / "videos"), episode_trigger=lambda _: True,
                                       disable_logger=True)
    agent = build_agent(config, env.observation_space, env.action_space)
    try:
        agent.load_state_dict(payload["agent"])
    except (RuntimeError, KeyError) as exc:  # a checkpoint whose networks do not fit this run's
        env.close()
        raise CheckpointError(f"the checkpoint does not fit this run's networks ({str(exc).splitlines()[0][:120]}); "
                              "pass a checkpoint of this run") from None
    returns: list[float] = []
    lengths: list[int] = []
    # Atari with life_loss=continue: as in training, a lost life does not reset the game; the env
    # resets when the whole game is over (the statistics wrapper reports it)
    whole_games = resets_only_at_game_over(config)
    explore = np.random.default_rng(eval_seed)  # ε-greedy draws (none when epsilon is 0)
    try:
        obs, _ = env.reset(seed=eval_seed)
        while len(returns) < episodes:
            action = agent.act(obs, deterministic=True)
            if epsilon > 0 and explore.random() < epsilon:
                action = int(explore.integers(env.action_space.n))  # type: ignore[attr-defined]  # Discrete
            obs, _reward, terminated, truncated, info = env.step(action)
            if "episode" in info:
                returns.append(float(info["episode"]["r"]))
                lengths.append(int(info["episode"]["l"]))
            if ("episode" in info) if whole_games else (terminated or truncated):
                if len(returns) >= episodes:
                    break  # no reset after the last episode (a video would get an empty extra clip)
                obs, reset_info = env.reset()
                if "episode" in reset_info:  # an Atari game the frame cap ended inside the reset (life_loss=reset)
                    returns.append(float(reset_info["episode"]["r"]))
                    lengths.append(int(reset_info["episode"]["l"]))
    except gym.error.DependencyNotInstalled as exc:  # rendering for --video (e.g. pygame for classic control)
        raise ConfigError(f"--video needs rendering that {config.env} cannot do here ({exc}); install the "
                          "video extra: pip install 'streamx-rl[video]'") from None
    finally:
        env.close()
    result = {
        "checkpoint_step": int(payload["loop"]["step"]),
        "episodes": episodes,
        "returns": returns,
        "lengths": lengths,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0,
        "policy": algorithm_class(config.algo).policy_description,
        "epsilon": epsilon,
    }
    atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2) + "\n")
    return result


def export_policy(run_dir: str | Path, out: str | Path | None = None, checkpoint: str | Path | None = None) -> Path:
    """Write the acting network and the normalizer statistics of a run to ``out``."""
    run_dir = Path(run_dir)
    if out is not None:
        if not str(out).strip():
            raise ConfigError("--out is empty; name the policy file to write, e.g. --out policy.pt")
        if Path(out).is_dir():
            raise ConfigError(f"--out {out} is a folder; name a file in it, e.g. --out {Path(out) / 'policy.pt'}")
    config, payload = _load(run_dir, checkpoint)
    network = _acting_network(config, "nothing to export (its networks are in the run's checkpoints)")
    env = make_env(config)
    restore_env_state(env, payload["env_state"], mid_episode=False)
    normalizer = find_wrapper(env, NormalizeObservation)
    time_feature = find_wrapper(env, AddTimeFeature)
    exported = {
        "format": POLICY_FORMAT,
        "algo": config.algo,
        "env": config.env,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "checkpoint_step": int(payload["loop"]["step"]),
        "network": payload["agent"]["networks"][network],
        "obs_mean": None if normalizer is None else normalizer.stats.mean,
        "obs_var": None if normalizer is None else normalizer.stats.var,
        "time_limit": None if time_feature is None else time_feature.time_limit,
        "observation_shape": list(env.unwrapped.observation_space.shape or ()),
        "action_space": _plain_action_space(env.action_space),
    }
    env.close()
    if len(exported["observation_shape"]) != 1:
        raise ConfigError(f"{config.env} has image observations; an exported Policy acts on vector observations "
                          "only — use `streamx eval`, which rebuilds the whole preprocessing stack")
    out = Path(out) if out is not None else run_dir / "policy.pt"
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: the folder {out.parent} does not exist")
    buffer = io.BytesIO()
    torch.save(to_plain(exported), buffer)
    atomic_write_bytes(out, buffer.getvalue())
    return out


def _plain_action_space(space: gym.spaces.Space) -> dict[str, Any] | None:
    """The action space as plain values for a policy file (None: a kind a Policy cannot rebuild)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return {"kind": "box", "low": [float(x) for x in space.low], "high": [float(x) for x in space.high]}
    return None


def _action_space(plain: dict[str, Any]) -> gym.spaces.Space:
    if plain["kind"] == "discrete":
        return gym.spaces.Discrete(int(plain["n"]))
    return gym.spaces.Box(np.asarray(plain["low"], np.float32), np.asarray(plain["high"], np.float32),
                          dtype=np.float32)


def _output_size(weights: dict[str, Any]) -> int:
    """Rows of the last Linear layer of an nn.Sequential state dict."""
    last = max((k for k in weights if k.endswith(".weight")), key=lambda k: int(k.split(".")[0]))
    return int(weights[last].shape[0])


def _policy_file_problem(exported: dict[str, Any]) -> str | None:
    """What is wrong with the plain entries of a policy file that would otherwise surface only when
    it acts (shapes and values of the normalizer statistics, the time limit), or None."""
    shape = exported.get("observation_shape")
    if not (isinstance(shape, list) and shape and all(isinstance(n, int) and n > 0 for n in shape)):
        return f"observation_shape is {shape!r}, not a list of positive sizes"
    for key in ("obs_mean", "obs_var"):
        value = exported.get(key)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape):
            return f"{key} does not have the observation's shape {tuple(shape)}"
        if not bool(torch.isfinite(value).all()) or (key == "obs_var" and bool((value < 0).any())):
            return f"{key} holds values that are not finite{' and non-negative' if key == 'obs_var' else ''}"
    if (exported.get("obs_mean") is None) != (exported.get("obs_var") is None):
        return "it holds only one of obs_mean and obs_var"
    limit = exported.get("time_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        return f"time_limit is {limit!r}, not a positive number of steps"
    action_space = exported.get("action_space")
    if action_space is not None and not (isinstance(action_space, dict) and action_space.get("kind") in ("discrete",
                                                                                                          "box")):
        return f"action_space is {action_space!r}"
    return None


class Policy:
    """A trained policy, loaded from :func:`export_policy`'s file, acting on RAW observations
    of a vector environment: it applies the frozen normalization and the time feature itself.

        policy = Policy.load("runs/hopper/policy.pt")
        action = policy.act(raw_obs, t=steps_since_reset)

    The acting network is rebuilt by the run's algorithm (any registered one) and acts as its
    ``act(obs, deterministic=True)`` does; files written before the action space was stored in
    them are read by rebuilding the stream-x networks from the weights' shapes.
    """

    def __init__(self, exported: dict[str, Any]) -> None:
        if not isinstance(exported, dict) or exported.get("format") != POLICY_FORMAT:
            raise CheckpointError("not a streamx policy file; create one with `streamx export <run-dir>`")
        problem = _policy_file_problem(exported)
        if problem is None:
            try:
                self._build(exported)
                return
            except StreamxError:
                raise
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
                problem = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        raise CheckpointError(f"the policy file is damaged ({problem}); export it again with "
                              "`streamx export <run-dir>`")

    def _build(self, exported: dict[str, Any]) -> None:
        self.algo: str = exported["algo"]
        self.config = Config.from_dict(json.loads(exported["config"]))
        self.obs_mean: np.ndarray | None = None if exported["obs_mean"] is None else exported["obs_mean"].numpy()
        self.obs_std: np.ndarray | None = (None if exported["obs_var"] is None
                                           else np.sqrt(exported["obs_var"].numpy() + 1e-8))
        self.time_limit: int | None = exported["time_limit"]
        shape = tuple(int(n) for n in exported["observation_shape"])
        weights = exported["network"]
        faults = learner_state_faults({"agent": {"network": weights}})
        if faults:
            raise CheckpointError(f"the policy's weights are not finite ({', '.join(faults)}); export it again "
                                  "from a good checkpoint (`streamx export <run-dir> --checkpoint <file>`)")
        if len(shape) != 1:
            raise ConfigError("Policy acts on raw vector observations; for image suites (Atari, MinAtar) use "
                              "`streamx eval`, which rebuilds the whole preprocessing stack")
        width = shape[0] + (self.time_limit is not None)
        space = gym.spaces.Box(-np.inf, np.inf, shape=(width,), dtype=np.float32)
        self._agent: StreamAgent | None = None
        if exported.get("action_space") is not None:
            cls = algorithm_class(self.algo)
            with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's RNG be
                self._agent = cls(space, _action_space(exported["action_space"]),
                                  self.config.replace(fast_path="off"))
            self.network = self._agent.networks[str(cls.acting_network)]
        else:
            self.network = self._legacy_network(weights, space)
        self.network.load_state_dict(weights)
        self.network.eval()
        self._check_obs = ArrayCheck(shape, "Policy.act", " (the environment's raw observation)")

    def _legacy_network(self, weights: dict[str, Any], space: gym.spaces.Box) -> nn.Module:
        """The acting network of a stream-x algorithm, from the shapes of its weights."""
        if self.algo not in ("stream_q", "stream_sarsa", "stream_ac"):
            raise CheckpointError(f"this policy file of {self.algo} holds no action space; export it again "
                                  "with this version (`streamx export <run-dir>`)")
        if self.algo != "stream_ac":
            return build_network(space, _output_size(weights), self.config, initialize=False)
        from streamx.agents.ac import CategoricalPolicy, GaussianPolicy

        trunk = build_network(space, None, self.config, initialize=False)
        features = self.config.hidden_sizes[-1]
        if "mean_head.weight" in weights:
            return GaussianPolicy(trunk, features, weights["mean_head.weight"].shape[0])
        return CategoricalPolicy(trunk, features, weights["logits_head.weight"].shape[0])

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        try:
            with open(path, "rb") as handle:
                if handle.read(len(MAGIC)) == MAGIC.encode():
                    raise CheckpointError(f"{path} is a training checkpoint, not a policy file; "
                                          "create one with `streamx export <run-dir>`")
            exported = torch.load(path, weights_only=True)
        except CheckpointError:
            raise
        except Exception as exc:  # any failure to read is reported the same way
            raise CheckpointError(f"cannot load policy file {path}: {unsafe_load_reason(exc)}") from None
        if not isinstance(exported, dict):
            raise CheckpointError(f"{path} is not a streamx policy file; create one with `streamx export <run-dir>`")
        return cls(exported)

    def preprocess(self, raw_obs: Any, t: int = 0) -> np.ndarray:
        """The network's input for a raw observation (checked: the raw shape, finite values)."""
        self._check_obs(raw_obs, "obs")
        obs = np.asarray(raw_obs, dtype=np.float64).reshape(-1)
        if self.time_limit is not None and (isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 0):
            raise InputError(f"Policy.act: t={t!r}; expected the number of steps since the reset (an int >= 0)", "t")
        if self.obs_mean is not None:
            assert self.obs_std is not None  # export_policy writes both statistics or neither
            obs = (obs - self.obs_mean.reshape(-1)) / self.obs_std.reshape(-1)
        if self.time_limit is not None:
            obs = np.append(obs, t / self.time_limit - 0.5)
        return obs.astype(np.float32)

    @torch.no_grad()
    def act(self, raw_obs: Any, t: int = 0) -> Any:
        """The deterministic action for a raw observation, ``t`` steps after the reset."""
        obs = self.preprocess(raw_obs, t)
        if self._agent is not None:
            return self._agent.act(obs, deterministic=True)
        x = torch.as_tensor(obs)[None]
        if self.algo == "stream_ac":
            out = self.network(x)
            if isinstance(out, tuple):  # Gaussian: the mean action
                return out[0][0].numpy()
            return int(out[0].argmax())
        return int(self.network(x)[0].argmax())

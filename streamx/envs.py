"""Environment factory: one entry per suite, with the paper's wrapper order (PAPER §4).

Vector suites (classic control, MuJoCo, any gymnasium env with Box observations):
flatten obs → record episode stats (raw return) → clip action (continuous) → reward scaling
→ obs normalization → time feature. A finiteness check sits innermost, so a NaN/inf from
the simulator stops the run with a clear message instead of poisoning the weights.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from streamx.config import Config
from streamx.errors import ConfigError
from streamx.wrappers import AddTimeFeature, CheckFinite, ClipAction, NormalizeObservation, ScaleReward

__all__ = ["SUITES", "Suite", "make_env", "suite_defaults", "suite_of"]


@dataclass(frozen=True)
class Suite:
    """An environment family and the config values the paper uses for it (PAPER §3, §5)."""

    name: str
    description: str
    example_ids: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)


SUITES: dict[str, Suite] = {
    "classic": Suite(
        "classic",
        "gymnasium classic control; MLP 32-32, time limit raised to 10,000 steps, 500k-step budget",
        ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1"),
        {"hidden_sizes": [32, 32], "max_episode_steps": 10_000, "total_steps": 500_000,
         "exploration_fraction": 0.05},
    ),
    "mujoco": Suite(
        "mujoco",
        "gymnasium MuJoCo (extra 'mujoco'); MLP 128-128, 2M-step budget",
        ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5"),
        {"hidden_sizes": [128, 128], "total_steps": 2_000_000},
    ),
    "gym": Suite(
        "gym",
        "any other registered gymnasium env with Box observations; MLP 128-128",
        (),
        {"hidden_sizes": [128, 128]},
    ),
}


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown environment id '{env_id}'.{hint} Run `streamx envs` to list the available ids"
        ) from None


def suite_of(env_id: str) -> str:
    """The suite an environment id belongs to (raises ConfigError for unknown ids)."""
    entry_point = str(_spec(env_id).entry_point)
    if entry_point.startswith("gymnasium.envs.classic_control"):
        return "classic"
    if entry_point.startswith("gymnasium.envs.mujoco"):
        return "mujoco"
    return "gym"


def suite_defaults(env_id: str) -> dict[str, Any]:
    """Config values the suite of ``env_id`` sets before presets and overrides."""
    return dict(SUITES[suite_of(env_id)].defaults)


def _make_raw(config: Config) -> gym.Env:
    kwargs = dict(config.env_kwargs)
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    try:
        return gym.make(config.env, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(
            f"environment '{config.env}' needs an optional dependency ({exc}); "
            "install it with: pip install 'streamx[mujoco]'"
        ) from None
    except TypeError as exc:
        raise ConfigError(f"environment '{config.env}' rejected env_kwargs {kwargs}: {exc}") from None


def make_env(config: Config) -> gym.Env:
    """Build the wrapped environment for ``config`` (not yet reset or seeded)."""
    suite_of(config.env)  # a clear error for unknown ids before gym.make tries
    env = CheckFinite(_make_raw(config))
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        if isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 3:
            pass  # images go to the conv nets as they are
        else:
            env = gym.wrappers.FlattenObservation(env)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if isinstance(env.action_space, gym.spaces.Box):
        env = ClipAction(env)
    if config.reward_scaling:
        env = ScaleReward(env, gamma=config.gamma)
    if config.obs_normalization:
        env = NormalizeObservation(env)
    elif env.observation_space.dtype != np.float32:
        env = gym.wrappers.DtypeObservation(env, np.float32)
    if config.time_feature:
        if len(env.observation_space.shape) != 1:
            raise ConfigError(
                f"the time feature appends to vector observations, but '{config.env}' has observations of "
                f"shape {env.observation_space.shape}; set time_feature=false"
            )
        time_limit = env.spec.max_episode_steps if env.spec is not None else None
        if not time_limit:
            raise ConfigError(
                f"environment '{config.env}' has no time limit, so the time feature t/T is undefined; "
                "set max_episode_steps=<T> or time_feature=false"
            )
        env = AddTimeFeature(env, time_limit)
    return env

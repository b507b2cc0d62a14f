"""Environment factory: one entry per suite, with the paper's wrapper order (PAPER §4).

Vector suites (classic control, MuJoCo, DM Control, any gymnasium env with Box observations):
flatten obs → record episode stats (raw return) → clip action (continuous) → reward scaling
→ obs normalization → time feature. A check (``CheckFinite``) sits right above the environment
(above the flattening, where there is one), so a NaN/inf or a misshapen observation from the
simulator stops the run with a clear message instead of poisoning the weights.

Atari (``streamx.atari``), MinAtar (channels first) and the ETT prediction task
(``streamx.ett``) have their own stacks. Optional suites live behind extras; asking for one
that is not installed gives one line naming the extra.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from streamx.checkpoint import remember_dm_control_model
from streamx.config import Config
from streamx.errors import ConfigError
from streamx.wrappers import (
    AddTimeFeature,
    ChannelsFirst,
    CheckFinite,
    ClipAction,
    NormalizeObservation,
    ScaleReward,
)

__all__ = ["SUITES", "Suite", "make_env", "suite_defaults", "suite_of"]


@dataclass(frozen=True)
class Suite:
    """An environment family and the config values the paper uses for it (PAPER §3, §5)."""

    name: str
    description: str
    example_ids: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    algo_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: str | None = None
    """pip extra that installs the suite (None: always available)."""
    requires: str | None = None
    """module whose presence means the extra is installed."""
    id_prefixes: tuple[str, ...] = ()
    id_suffixes: tuple[str, ...] = ()

    def matches(self, env_id: str) -> bool:
        return (bool(self.id_prefixes) and env_id.startswith(self.id_prefixes)) or (
            bool(self.id_suffixes) and env_id.endswith(self.id_suffixes))

    @property
    def installed(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


# ε horizons are the paper's (PAPER §5, §9): exploration fraction × the paper's budget for the suite,
# absolute, so that a shorter run follows the start of the paper's schedule instead of annealing faster
_IMAGE_DEFAULTS = {"time_feature": False, "total_steps": 10_000_000, "exploration_fraction": 0.05,
                   "exploration_steps": 500_000}

SUITES: dict[str, Suite] = {
    "classic": Suite(
        "classic",
        "gymnasium classic control; MLP 32-32, time limit raised to 10,000 steps, 500k-step budget",
        ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1"),
        {"hidden_sizes": [32, 32], "max_episode_steps": 10_000, "total_steps": 500_000,
         "exploration_fraction": 0.05, "exploration_steps": 25_000},
    ),
    "mujoco": Suite(
        "mujoco",
        "gymnasium MuJoCo; MLP 128-128, 2M-step budget",
        ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5"),
        {"hidden_sizes": [128, 128], "total_steps": 2_000_000},
        extra="mujoco", requires="mujoco",
    ),
    "dmc": Suite(
        "dmc",
        "DeepMind Control through shimmy, flattened observations; MLP 128-128, T=1000, 2M steps",
        ("dm_control/dog-stand-v0", "dm_control/cheetah-run-v0", "dm_control/walker-walk-v0",
         "dm_control/humanoid-walk-v0"),
        {"hidden_sizes": [128, 128], "total_steps": 2_000_000, "max_episode_steps": 1000},
        extra="dmc", requires="shimmy", id_prefixes=("dm_control/",),
    ),
    "atari": Suite(
        "atari",
        "Atari 2600 through ale-py with the paper's preprocessing (84x84x4, episodic life); conv net",
        ("BreakoutNoFrameskip-v4", "ALE/Enduro-v5", "Pong"),
        dict(_IMAGE_DEFAULTS),
        extra="atari", requires="ale_py", id_prefixes=("ALE/",), id_suffixes=("NoFrameskip-v4",),
    ),
    "minatar": Suite(
        "minatar",
        "MinAtar (GPL-3.0, optional), channels first; conv net 16-3x3 + FC 128",
        ("MinAtar/Breakout-v1", "MinAtar/Asterix-v1", "MinAtar/Freeway-v1", "MinAtar/Seaquest-v1",
         "MinAtar/SpaceInvaders-v1"),
        dict(_IMAGE_DEFAULTS),
        algo_defaults={"stream_q": {"total_steps": 5_000_000, "exploration_fraction": 0.2,
                                    "exploration_steps": 1_000_000}},
        extra="minatar", requires="minatar", id_prefixes=("MinAtar/",),
    ),
    "ett": Suite(
        "ett",
        "ETT electricity-transformer prediction task for stream_td (gamma=lambda=0.9, one pass)",
        ("streamx/ETTm2-v0", "streamx/ETTh1-v0", "streamx/ETTh2-v0", "streamx/ETTm1-v0"),
        {"gamma": 0.9, "lamda": 0.9, "time_feature": False, "hidden_sizes": [128, 128],
         "total_steps": 100_000_000},
        id_prefixes=("streamx/ETT",),
    ),
    "gym": Suite(
        "gym",
        "any other registered gymnasium env with Box observations; MLP 128-128",
        (),
        {"hidden_sizes": [128, 128]},
    ),
}


def _drop_settotalmass_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("compiler attribute 'settotalmass' is deprecated")


def _quiet_dm_control_model_notice() -> None:
    """MuJoCo ≥ 3.3 warns, through dm_control's absl logger, that some of dm_control's own model
    files (cheetah, dog, ...) use the deprecated ``settotalmass`` attribute: nothing a user can act
    on, printed at every env build. Drop that one message; every other MuJoCo warning still shows."""
    logger = logging.getLogger("absl")
    if _drop_settotalmass_notice not in logger.filters:
        logger.addFilter(_drop_settotalmass_notice)


def _register_plugin_envs(suite: Suite) -> None:
    """gymnasium 1.x does not auto-register plugin envs: do it before gym.spec/make."""
    if not suite.installed:
        raise ConfigError(f"the {suite.name} suite needs an optional extra that is not installed: "
                          f"pip install 'streamx-rl[{suite.extra}]'")
    if suite.name == "dmc":
        with warnings.catch_warnings():
            # importing dm_control picks a renderer, GLFW first: without a display GLFW warns and
            # dm_control falls back to EGL/OSMesa (rendering only; stepping never needs one)
            warnings.filterwarnings("ignore", message=r".*DISPLAY environment variable is missing")
            import shimmy

        gym.register_envs(shimmy)
        _quiet_dm_control_model_notice()
    elif suite.name == "atari":
        import ale_py

        gym.register_envs(ale_py)
    elif suite.name == "minatar":
        from minatar.gym import register_envs

        if not any(key.startswith("MinAtar/") for key in gym.registry):
            register_envs()
    elif suite.name == "ett":
        from streamx.ett import register_ett_envs

        register_ett_envs()


def _unknown_env(env_id: str) -> ConfigError:
    from streamx.analysis import atari_game

    if not SUITES["atari"].installed and atari_game(env_id) is not None:  # e.g. "Breakout" without ale-py
        return ConfigError(f"'{env_id}' is an Atari game, and Atari environments need ale-py, which is not "
                           "installed: pip install 'streamx-rl[atari]'")
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown environment id '{env_id}'.{hint} Run `streamx envs` to list the available ids")


def suite_of(env_id: str) -> str:
    """The suite an environment id belongs to (ConfigError for unknown ids or missing extras)."""
    for suite in SUITES.values():
        if suite.matches(env_id):
            _register_plugin_envs(suite)
            if suite.name == "atari":
                from streamx.atari import resolve_atari_id

                resolve_atari_id(env_id)  # raises a clear error for unknown games
                return suite.name
            if env_id not in gym.registry:
                raise _unknown_env(env_id)
            return suite.name
    if SUITES["atari"].installed:
        from streamx.atari import is_atari_id, resolve_atari_id

        if is_atari_id(env_id):  # Breakout-v4, BreakoutNoFrameskip-v0, or a bare name such as "Breakout"
            _register_plugin_envs(SUITES["atari"])
            resolve_atari_id(env_id)
            return "atari"
    try:
        entry_point = str(gym.spec(env_id).entry_point)
    except gym.error.Error:
        raise _unknown_env(env_id) from None
    if entry_point.startswith("gymnasium.envs.classic_control"):
        return "classic"
    if entry_point.startswith("gymnasium.envs.mujoco"):
        if not SUITES["mujoco"].installed:
            raise ConfigError(f"'{env_id}' needs MuJoCo, which is not installed: pip install 'streamx-rl[mujoco]'")
        return "mujoco"
    return "gym"


def resets_only_at_game_over(config: Config) -> bool:
    """Whether the loop resets the env only when a whole game ends (``info["episode"]``), not at
    every ``terminated``: Atari with ``life_loss=continue``, the paper's procedure (docs/atari.md).
    The learner then never sees truncation."""
    return config.life_loss == "continue" and suite_of(config.env) == "atari"


def suite_defaults(env_id: str, algo: str | None = None,
                   algorithm_defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Config values the suite of ``env_id`` sets (for ``algo``) before presets and overrides;
    ``algorithm_defaults`` (the algorithm's own, ``config_defaults``) go between the suite's
    general values and its values for that algorithm."""
    suite = SUITES[suite_of(env_id)]
    return {**suite.defaults, **(algorithm_defaults or {}), **suite.algo_defaults.get(algo or "", {})}


def _make_raw(config: Config, **extra: Any) -> gym.Env:
    kwargs = {**config.env_kwargs, **extra}
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    try:
        env = gym.make(config.env, **kwargs)
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(f"environment '{config.env}' needs a dependency that is not installed: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"environment '{config.env}' rejected env_kwargs {kwargs}: {exc}") from None
    remember_dm_control_model(env)  # lets DM Control checkpoints hold the simulator state
    return env


def _vector_env(config: Config) -> gym.Env:
    env = _make_raw(config)
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        env = gym.wrappers.FlattenObservation(env)
    env = CheckFinite(env)  # after flattening, so Dict observations (DM Control) are checked too
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if isinstance(env.action_space, gym.spaces.Box):
        env = ClipAction(env)
    if config.reward_scaling:
        env = ScaleReward(env, gamma=config.gamma)
    if config.obs_normalization:
        env = NormalizeObservation(env)
    elif env.observation_space.dtype != np.float32:
        with warnings.catch_warnings():  # float32 observations are the intent; their bounds follow
            warnings.filterwarnings("ignore", message=r".*precision lowered by casting to float32")
            env = gym.wrappers.DtypeObservation(env, np.float32)
    if config.time_feature:
        time_limit = env.spec.max_episode_steps if env.spec is not None else None
        if not time_limit:
            raise ConfigError(
                f"environment '{config.env}' has no time limit, so the time feature t/T is undefined; "
                "set max_episode_steps=<T> or time_feature=false"
            )
        env = AddTimeFeature(env, time_limit)
    return env


def _minatar_env(config: Config) -> gym.Env:
    env: gym.Env = gym.wrappers.RecordEpisodeStatistics(CheckFinite(_make_raw(config)))
    env = ChannelsFirst(env)
    if config.reward_scaling:
        env = ScaleReward(env, gamma=config.gamma)
    if config.obs_normalization:
        env = NormalizeObservation(env)
    return env


# make_atari's parameters that a run takes from its config fields, never from env_kwargs
_ATARI_CONFIG_FIELDS = ("gamma", "obs_normalization", "reward_scaling", "max_episode_steps")


def _atari_env(config: Config) -> gym.Env:
    from streamx.atari import make_atari

    for name in _ATARI_CONFIG_FIELDS:
        if name in config.env_kwargs:
            raise ConfigError(f"env_kwargs sets {name}, which is a config field of its own: remove it from "
                              f"env_kwargs and set {name}={config.env_kwargs[name]!r} instead")
    return make_atari(config.env, gamma=config.gamma, obs_normalization=config.obs_normalization,
                      reward_scaling=config.reward_scaling, max_episode_steps=config.max_episode_steps,
                      **config.env_kwargs)


def _ett_env(config: Config) -> gym.Env:
    env: gym.Env = gym.wrappers.RecordEpisodeStatistics(_make_raw(config, cumulant=config.ett_cumulant))
    if config.reward_scaling:  # the cumulant is scaled as a reward is in control (PAPER §9)
        env = ScaleReward(env, gamma=config.gamma)
    if config.obs_normalization:
        env = NormalizeObservation(env)
    return env


_BUILDERS: dict[str, Callable[[Config], gym.Env]] = {
    "atari": _atari_env, "minatar": _minatar_env, "ett": _ett_env,
}


def make_env(config: Config) -> gym.Env:
    """Build the wrapped environment for ``config`` (not yet reset or seeded)."""
    suite = suite_of(config.env)
    if config.time_feature and suite in ("atari", "minatar", "ett"):
        raise ConfigError(f"the time feature applies to vector observations, not to the {suite} suite; "
                          "set time_feature=false")
    return _BUILDERS.get(suite, _vector_env)(config)

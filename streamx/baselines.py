"""Batch baselines through Stable-Baselines3 (PAPER §6): the other columns of the stream-barrier figure.

    ppo, sac, dqn        SB3's PPO, SAC, DQN with rl-baselines3-zoo's hyperparameters for the env
    ppo1, sac1, dqn1     the same, run with a buffer and a batch of 1 (``_BATCH_OF_ONE``)

Nothing here reimplements an algorithm: a baseline is an SB3 model, the zoo's hyperparameters
(``ZOO``, copied from the zoo's YAML files, sources below), the streamx environment with its
raw-return recorder innermost, and a callback that writes the same run directory as a stream
run (config.json, episodes.csv, metrics.csv, summary.json) as the run goes. docs/baselines.md
has the exact hyperparameters, the environment stacks and the caveats.

Differences from the zoo, all for one reason — every run counts agent steps of ONE environment,
as the stream runs do: one env instead of ``n_envs`` (a zoo ``n_steps`` is multiplied by its
``n_envs``, so each PPO update sees as many samples as in the zoo); the budget is
``config.total_steps``, not the zoo's ``n_timesteps``; time limits are streamx's (classic control
10,000 steps). Stream-x hyperparameters (lr, gamma, lamda, hidden_sizes, the stabilizer
switches) do not apply to baselines; ``config.sb3_kwargs`` overrides any SB3 hyperparameter.

Baselines are checkpointed like stream runs (every ``checkpoint_interval`` steps and on
SIGINT/SIGTERM, in streamx's checksummed weights_only format, never a pickle) and
``streamx train --resume`` continues them: where the simulator state is saved (MuJoCo, classic
control, DM Control, MinAtar) exactly as if never stopped, on Atari at a new game (see
"checkpoints" below).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from streamx import __version__
from streamx.checkpoint import (
    FORMAT_VERSION,
    continues_mid_episode,
    env_state,
    global_rng_state,
    remember_dm_control_model,
    restore_env_state,
    restore_global_rng_state,
)
from streamx.config import Config
from streamx.envs import suite_of
from streamx.errors import CheckpointError, ConfigError
from streamx.outputs import RunWriter
from streamx.provenance import versions_record
from streamx.registry import BASELINES
from streamx.rundir import (
    RunResult,
    StopSignals,
    checkpoint_paths,
    default_run_dir,
    latest_checkpoint,
    log_interval_metrics,
    progress_bar,
    run_summary,
    seed_everything,
    write_checkpoint,
)
from streamx.wrappers import CheckFinite

__all__ = ["BASELINES", "ZOO", "ZOO_SOURCES", "baseline_hyperparameters", "resolve_hyperparameters",
           "resume_baseline", "train_baseline"]

_INSTALL_HINT = "pip install 'streamx-rl[sb3]'"

ZOO_SOURCES = {
    "ppo": "DLR-RM/rl-baselines3-zoo hyperparams/ppo.yml @ 208b6fdf (MuJoCo: the tuned -v4 entries)",
    "sac": "DLR-RM/rl-baselines3-zoo hyperparams/sac.yml @ c94924e5 (MuJoCo: &mujoco-defaults)",
    "dqn": "DLR-RM/rl-baselines3-zoo hyperparams/dqn.yml @ ce95481b",
}
"""Where each table of ``ZOO`` comes from (repository, file, commit)."""

# The zoo's PPO policy for its tuned MuJoCo entries ("dict(log_std_init=-2, ortho_init=False,
# activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256]))"), written as JSON.
_PPO_MUJOCO_POLICY = {"log_std_init": -2, "ortho_init": False, "activation_fn": "relu",
                      "net_arch": {"pi": [256, 256], "vf": [256, 256]}}

ZOO: dict[str, dict[str, dict[str, Any]]] = {
    # Keys: a gymnasium env name without its version (the zoo's -v4 MuJoCo entries serve -v4 and
    # -v5), or "suite:<name>" for the rest of a suite. Values as in the zoo's YAML; "lin_X" is
    # the zoo's linear schedule from X to 0; "normalize" is the zoo's VecNormalize switch.
    "ppo": {
        "CartPole": {"n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
                     "n_epochs": 20, "ent_coef": 0.0, "learning_rate": "lin_0.001", "clip_range": "lin_0.2"},
        "Pendulum": {"n_envs": 4, "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10,
                     "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2, "use_sde": True,
                     "sde_sample_freq": 4},
        "MountainCar": {"normalize": True, "n_envs": 16, "n_steps": 16, "gae_lambda": 0.98, "gamma": 0.99,
                        "n_epochs": 4, "ent_coef": 0.0},
        "MountainCarContinuous": {"normalize": True, "batch_size": 256, "n_steps": 8, "gamma": 0.9999,
                                  "learning_rate": 7.77e-05, "ent_coef": 0.00429, "clip_range": 0.1,
                                  "n_epochs": 10, "gae_lambda": 0.9, "max_grad_norm": 5, "vf_coef": 0.19,
                                  "use_sde": True, "policy_kwargs": {"log_std_init": -3.29, "ortho_init": False}},
        "Acrobot": {"normalize": True, "n_envs": 16, "n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99,
                    "n_epochs": 4, "ent_coef": 0.0},
        "HalfCheetah": {"normalize": True, "batch_size": 64, "n_steps": 512, "gamma": 0.98,
                        "learning_rate": 2.0633e-05, "ent_coef": 0.000401762, "clip_range": 0.1, "n_epochs": 20,
                        "gae_lambda": 0.92, "max_grad_norm": 0.8, "vf_coef": 0.58096,
                        "policy_kwargs": _PPO_MUJOCO_POLICY},
        "Hopper": {"normalize": True, "batch_size": 32, "n_steps": 512, "gamma": 0.999,
                   "learning_rate": 9.80828e-05, "ent_coef": 0.00229519, "clip_range": 0.2, "n_epochs": 5,
                   "gae_lambda": 0.99, "max_grad_norm": 0.7, "vf_coef": 0.835671,
                   "policy_kwargs": _PPO_MUJOCO_POLICY},
        "Walker2d": {"normalize": True, "batch_size": 32, "n_steps": 512, "gamma": 0.99,
                     "learning_rate": 5.05041e-05, "ent_coef": 0.000585045, "clip_range": 0.1, "n_epochs": 20,
                     "gae_lambda": 0.95, "max_grad_norm": 1, "vf_coef": 0.871923},
        "Humanoid": {"normalize": True, "batch_size": 256, "n_steps": 512, "gamma": 0.95,
                     "learning_rate": 3.56987e-05, "ent_coef": 0.00238306, "clip_range": 0.3, "n_epochs": 5,
                     "gae_lambda": 0.9, "max_grad_norm": 2, "vf_coef": 0.431892,
                     "policy_kwargs": _PPO_MUJOCO_POLICY},
        "HumanoidStandup": {"normalize": True, "batch_size": 32, "n_steps": 512, "gamma": 0.99,
                            "learning_rate": 2.55673e-05, "ent_coef": 3.62109e-06, "clip_range": 0.3,
                            "n_epochs": 20, "gae_lambda": 0.9, "max_grad_norm": 0.7, "vf_coef": 0.430793,
                            "policy_kwargs": _PPO_MUJOCO_POLICY},
        "InvertedDoublePendulum": {"normalize": True, "batch_size": 512, "n_steps": 128, "gamma": 0.98,
                                   "learning_rate": 0.000155454, "ent_coef": 1.05057e-06, "clip_range": 0.4,
                                   "n_epochs": 10, "gae_lambda": 0.8, "max_grad_norm": 0.5,
                                   "vf_coef": 0.695929},
        "InvertedPendulum": {"normalize": True, "batch_size": 64, "n_steps": 32, "gamma": 0.999,
                             "learning_rate": 0.000222425, "ent_coef": 1.37976e-07, "clip_range": 0.4,
                             "n_epochs": 5, "gae_lambda": 0.9, "max_grad_norm": 0.3, "vf_coef": 0.19816},
        "Reacher": {"normalize": True, "batch_size": 32, "n_steps": 512, "gamma": 0.9,
                    "learning_rate": 0.000104019, "ent_coef": 7.52585e-08, "clip_range": 0.3, "n_epochs": 5,
                    "gae_lambda": 1.0, "max_grad_norm": 0.9, "vf_coef": 0.950368},
        "Swimmer": {"normalize": True, "gamma": 0.9999, "n_envs": 4, "n_steps": 1024, "batch_size": 256,
                    "learning_rate": 6e-4, "gae_lambda": 0.98},
        "Ant": {"normalize": True},  # the zoo's &mujoco-defaults: SB3's PPO defaults + VecNormalize
        "suite:mujoco": {"normalize": True},
        "suite:dmc": {"normalize": True},  # no zoo entry: its MuJoCo defaults
        "suite:atari": {"policy": "CnnPolicy", "n_envs": 8, "n_steps": 128, "n_epochs": 4, "batch_size": 256,
                        "learning_rate": "lin_2.5e-4", "clip_range": "lin_0.1", "vf_coef": 0.5, "ent_coef": 0.01},
    },
    "sac": {
        "Pendulum": {"learning_rate": 1e-3},
        "MountainCarContinuous": {"learning_rate": 3e-4, "buffer_size": 50000, "batch_size": 512, "ent_coef": 0.1,
                                  "train_freq": 32, "gradient_steps": 32, "gamma": 0.9999, "tau": 0.01,
                                  "learning_starts": 0, "use_sde": True,
                                  "policy_kwargs": {"log_std_init": -3.67, "net_arch": [64, 64]}},
        "Swimmer": {"learning_starts": 10000, "gamma": 0.9999},
        "suite:mujoco": {"learning_starts": 10000},  # &mujoco-defaults (HalfCheetah, Ant, Hopper, Walker2d, ...)
        "suite:dmc": {"learning_starts": 10000},  # no zoo entry: its MuJoCo defaults
    },
    "dqn": {
        "CartPole": {"learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100000, "learning_starts": 1000,
                     "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
                     "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
                     "policy_kwargs": {"net_arch": [256, 256]}},
        "MountainCar": {"learning_rate": 4e-3, "batch_size": 128, "buffer_size": 10000, "learning_starts": 1000,
                        "gamma": 0.98, "target_update_interval": 600, "train_freq": 16, "gradient_steps": 8,
                        "exploration_fraction": 0.2, "exploration_final_eps": 0.07,
                        "policy_kwargs": {"net_arch": [256, 256]}},
        "Acrobot": {"learning_rate": 6.3e-4, "batch_size": 128, "buffer_size": 50000, "learning_starts": 0,
                    "gamma": 0.99, "target_update_interval": 250, "train_freq": 4, "gradient_steps": -1,
                    "exploration_fraction": 0.12, "exploration_final_eps": 0.1,
                    "policy_kwargs": {"net_arch": [256, 256]}},
        # SB3 refuses optimize_memory_usage with its default handle_timeout_termination=True.
        "suite:atari": {"policy": "CnnPolicy", "buffer_size": 10000, "learning_rate": 1e-4, "batch_size": 32,
                        "learning_starts": 100000, "target_update_interval": 1000, "train_freq": 4,
                        "gradient_steps": 1, "exploration_fraction": 0.1, "exploration_final_eps": 0.01,
                        "optimize_memory_usage": True,
                        "replay_buffer_kwargs": {"handle_timeout_termination": False}},
    },
}
"""rl-baselines3-zoo's hyperparameters per algorithm and env (see ``ZOO_SOURCES``); an env with
no entry gets SB3's defaults."""

_BATCH_OF_ONE: dict[str, dict[str, Any]] = {
    # PAPER §6: a buffer and a batch of 1; everything else stays the zoo's. SB3 refuses advantage
    # normalization over a batch of one (the normalized advantage would be 0/0). n_epochs stays
    # the zoo's: with n_epochs=1 the probability ratio is always 1, the clip never acts, and
    # PPO1 would be a one-step actor-critic with Adam rather than PPO.
    "ppo1": {"n_steps": 1, "batch_size": 1, "normalize_advantage": False},
    # learning_starts=0: with room for one transition a warm-up collects nothing that lasts;
    # each transition is learned from once, on arrival, like a stream method.
    "sac1": {"buffer_size": 1, "batch_size": 1, "learning_starts": 0, "train_freq": 1, "gradient_steps": 1},
    # The target network is synced every step (tau=1): Stream Q(λ) has none, and a delayed copy
    # of a network updated from single transitions would be a second difference besides the
    # buffer. optimize_memory_usage needs room for two transitions, so it is off.
    "dqn1": {"buffer_size": 1, "batch_size": 1, "learning_starts": 0, "train_freq": 1, "gradient_steps": 1,
             "target_update_interval": 1, "tau": 1.0, "optimize_memory_usage": False,
             "replay_buffer_kwargs": {}},
}

_ACTION_SPACES = {"sac": (gym.spaces.Box,), "dqn": (gym.spaces.Discrete,),
                  "ppo": (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)}
# Keys of ours beside the SB3 constructor's own arguments.
_EXTRA_KEYS = ("normalize", "flush_denormal", "fused_optimizer")
# streamx's numerics defaults for every baseline (docs/baselines.md#numerics): they change no
# hyperparameter, only how fast the same arithmetic runs on a CPU.
_NUMERICS: dict[str, Any] = {"flush_denormal": True, "fused_optimizer": True}
# Constructor arguments streamx sets itself.
_FIXED_KEYS = ("self", "env", "seed", "device", "verbose", "_init_setup_model", "tensorboard_log")


def _sb3() -> Any:
    try:
        import stable_baselines3
    except ImportError:
        raise ConfigError(f"the batch baselines ({', '.join(BASELINES)}) need Stable-Baselines3, which is "
                          f"not installed: {_INSTALL_HINT}") from None
    return stable_baselines3


def _family(algo: str) -> str:
    return algo.removesuffix("1")


def _env_name(env_id: str) -> str:
    name = env_id.rsplit("/", 1)[-1]
    return name.rsplit("-v", 1)[0] if "-v" in name else name


def baseline_hyperparameters(algo: str, env_id: str) -> dict[str, Any]:
    """The zoo's SB3 hyperparameters for ``algo`` on ``env_id`` (JSON values), for one env,
    with the batch-of-one changes for ppo1/sac1/dqn1."""
    if algo not in BASELINES:
        raise ConfigError(f"'{algo}' is not a batch baseline; choose one of: {', '.join(BASELINES)}")
    table = ZOO[_family(algo)]
    suite = suite_of(env_id)
    entry = table.get(_env_name(env_id)) if suite in ("classic", "mujoco") else None
    hyper: dict[str, Any] = {"policy": "MlpPolicy", **copy.deepcopy(entry if entry is not None
                                                                   else table.get(f"suite:{suite}", {}))}
    n_envs = hyper.pop("n_envs", 1)
    if "n_steps" in hyper:  # one env collects what the zoo's n_envs did per update
        hyper["n_steps"] *= n_envs
    hyper.update(copy.deepcopy(_BATCH_OF_ONE.get(algo, {})))
    hyper.update(_NUMERICS)
    return hyper


def numeric_values(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: make such strings numbers (``lin_…`` and ``auto`` stay)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        return {key: numeric_values(v) for key, v in value.items()}
    if isinstance(value, list):
        return [numeric_values(v) for v in value]
    return value


def resolve_hyperparameters(config: Config) -> dict[str, Any]:
    """The zoo's hyperparameters with ``config.sb3_kwargs`` over them; unknown keys are refused."""
    sb3 = _sb3()
    family = _family(config.algo)
    algo_class = getattr(sb3, family.upper())
    allowed = [name for name in inspect.signature(algo_class.__init__).parameters if name not in _FIXED_KEYS]
    allowed += list(_EXTRA_KEYS)
    for key in config.sb3_kwargs:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown {family.upper()} hyperparameter '{key}' in sb3_kwargs{hint}; "
                              f"choose from: {', '.join(sorted(allowed))}")
    return {**baseline_hyperparameters(config.algo, config.env), **numeric_values(dict(config.sb3_kwargs))}


# --- from JSON values to SB3 arguments ------------------------------------------------------

def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        from stable_baselines3.common.utils import LinearSchedule

        return LinearSchedule(float(value.removeprefix("lin_")), 0.0, 1.0)  # zoo: X · progress_remaining
    return value


def _activation(name: Any) -> Any:
    import torch

    if not isinstance(name, str):
        return name
    wanted = name.removeprefix("nn.").replace("_", "").lower()
    for attr in dir(torch.nn):
        if attr.lower() == wanted and isinstance(getattr(torch.nn, attr), type):
            return getattr(torch.nn, attr)
    raise ConfigError(f"unknown activation_fn '{name}' in sb3_kwargs.policy_kwargs; use a torch.nn name such as "
                      "relu or tanh")


def _sb3_arguments(hyper: dict[str, Any]) -> dict[str, Any]:
    kwargs = {key: value for key, value in hyper.items() if key not in _EXTRA_KEYS}
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        if key in kwargs:
            kwargs[key] = _schedule(kwargs[key])
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    if "activation_fn" in policy_kwargs:
        policy_kwargs["activation_fn"] = _activation(policy_kwargs["activation_fn"])
    if hyper.get("fused_optimizer") and "optimizer_class" not in policy_kwargs:
        # SB3's default optimizer is Adam; torch's fused CPU kernel does its update in one pass
        # per parameter instead of ~8 dispatched ops (the same update up to rounding)
        policy_kwargs["optimizer_kwargs"] = {"fused": True, **policy_kwargs.get("optimizer_kwargs", {})}
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])  # e.g. [1, "episode"]
    return kwargs


# --- environments ---------------------------------------------------------------------------

def _vector_env(config: Config) -> gym.Env:
    """The raw env with streamx's time limit, flattened, with the raw-return recorder (no
    stream-x normalizers: SB3 brings its own where the zoo uses them)."""
    kwargs = dict(config.env_kwargs)
    if config.max_episode_steps is not None:
        kwargs["max_episode_steps"] = config.max_episode_steps
    try:
        env = gym.make(config.env, **kwargs)
    except (gym.error.DependencyNotInstalled, TypeError) as exc:
        raise ConfigError(f"environment '{config.env}' could not be made with {kwargs}: {exc}") from None
    remember_dm_control_model(env)
    if not (isinstance(env.observation_space, gym.spaces.Box) and len(env.observation_space.shape) == 1):
        env = gym.wrappers.FlattenObservation(env)
    env = CheckFinite(env)
    return gym.wrappers.RecordEpisodeStatistics(env)


def _atari_env(config: Config) -> gym.Env:
    """The zoo's Atari stack: SB3's AtariWrapper (no-op reset 30, max-and-skip 4, life loss =
    terminal, FIRE reset, 84×84 grayscale, reward clipping) over streamx's whole-game recorder on
    the raw ``NoFrameskip`` emulator; frames are stacked (4) outside, as the zoo does."""
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    from streamx.atari import RecordGameStatistics, resolve_atari_id

    kwargs: dict[str, Any] = {"repeat_action_probability": 0.0, "full_action_space": False, **config.env_kwargs,
                              "frameskip": 1}
    if config.max_episode_steps is not None:
        kwargs["max_num_frames_per_episode"] = 4 * config.max_episode_steps
    raw = gym.make(resolve_atari_id(config.env), **kwargs)
    return AtariWrapper(RecordGameStatistics(raw))


def _vec_env(config: Config, hyper: dict[str, Any]) -> Any:
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

    suite = suite_of(config.env)
    if suite == "ett":
        raise ConfigError("the ETT prediction task has no actions; it is for stream_td only")
    make = _atari_env if suite == "atari" else _vector_env
    venv: Any = DummyVecEnv([lambda: make(config)])
    family = _family(config.algo)
    if not isinstance(venv.action_space, _ACTION_SPACES[family]):
        venv.close()
        raise ConfigError(f"{config.algo} needs {' or '.join(t.__name__ for t in _ACTION_SPACES[family])} actions; "
                          f"{config.env} has {type(venv.action_space).__name__} actions")
    if suite == "atari":
        venv = VecFrameStack(venv, n_stack=4)
    normalize = hyper.get("normalize", False)
    if normalize:
        # The zoo's VecNormalize: observations and rewards, with the algorithm's discount.
        options = dict(normalize) if isinstance(normalize, dict) else {}
        options.setdefault("gamma", hyper.get("gamma", 0.99))
        venv = VecNormalize(venv, **options)
    return venv


# --- checkpoints ----------------------------------------------------------------------------
# An SB3 run is checkpointed where its state is whole: at the start of a rollout (SB3's
# ``on_rollout_start``), after the previous update and before the next action. There the state
# is: the model's torch state (policy incl. target networks, optimizers, SAC's entropy
# coefficient), its counters and the observation to act on, the replay buffer's filled part,
# VecNormalize's statistics, the environment (``streamx.checkpoint.env_state``: wrappers,
# RNGs, the simulator state where it is saved) and the global RNGs. A PPO rollout buffer is
# empty there. Everything goes into streamx's checksummed weights_only checkpoint file.

_COUNTERS = ("num_timesteps", "_episode_num", "_n_updates", "_current_progress_remaining", "_n_calls",
             "exploration_rate")


def _dummy_vec_env(venv: Any) -> Any:
    """The one-env DummyVecEnv inside SB3's VecEnv wrappers."""
    while hasattr(venv, "venv"):
        venv = venv.venv
    return venv


def _base_env(venv: Any) -> gym.Env:
    """The gymnasium env inside a (wrapped) one-env DummyVecEnv."""
    return _dummy_vec_env(venv).envs[0]


def _env_state(venv: Any, config: Config) -> dict[str, Any]:
    """``streamx.checkpoint.env_state`` of the base env — for Atari without the emulator: SB3's
    AtariWrapper (lives, the real game end) and VecFrameStack keep episode state that is not
    saved, so an Atari baseline resumes at a new game."""
    state = env_state(_base_env(venv))
    if suite_of(config.env) == "atari":
        state = {**state, "simulator": None, "exact": False}
    return state


def _vec_normalize(venv: Any) -> Any:
    while venv is not None and not hasattr(venv, "obs_rms"):
        venv = getattr(venv, "venv", None)
    return venv


def _attribute(obj: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        obj = getattr(obj, name)
    return obj


def _replay_state(buffer: Any) -> dict[str, Any] | None:
    if buffer is None or not hasattr(buffer, "buffer_size"):
        return None
    filled = buffer.buffer_size if buffer.full else min(buffer.pos + 1, buffer.buffer_size)
    arrays = {name: value[:filled] for name, value in vars(buffer).items()
              if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == buffer.buffer_size}
    return {"pos": int(buffer.pos), "full": bool(buffer.full), "arrays": arrays}


def _restore_replay(buffer: Any, saved: dict[str, Any] | None) -> None:
    if buffer is None or saved is None:
        return
    for name, value in saved["arrays"].items():
        array = getattr(buffer, name)
        array[:len(value)] = value.numpy()
    buffer.pos, buffer.full = int(saved["pos"]), bool(saved["full"])


def _running_stats(rms: Any) -> dict[str, Any]:
    return {"mean": np.asarray(rms.mean, dtype=np.float64), "var": np.asarray(rms.var, dtype=np.float64),
            "count": float(rms.count)}


def _load_running_stats(rms: Any, saved: dict[str, Any]) -> None:
    rms.mean, rms.var, rms.count = saved["mean"].numpy().copy(), saved["var"].numpy().copy(), float(saved["count"])


def _normalizer_state(venv: Any) -> dict[str, Any] | None:
    norm = _vec_normalize(venv)
    if norm is None:
        return None
    return {"obs_rms": _running_stats(norm.obs_rms), "ret_rms": _running_stats(norm.ret_rms),
            "returns": np.asarray(norm.returns, dtype=np.float64),
            "old_obs": np.asarray(norm.old_obs), "old_reward": np.asarray(norm.old_reward)}


def _restore_normalizer(venv: Any, saved: dict[str, Any] | None) -> None:
    norm = _vec_normalize(venv)
    if norm is None or saved is None:
        return
    _load_running_stats(norm.obs_rms, saved["obs_rms"])
    _load_running_stats(norm.ret_rms, saved["ret_rms"])
    norm.returns = saved["returns"].numpy().copy()
    norm.old_obs, norm.old_reward = saved["old_obs"].numpy().copy(), saved["old_reward"].numpy().copy()


def _model_state(model: Any) -> dict[str, Any]:
    _, variables = model._get_torch_save_params()
    optional = {"last_original_obs": getattr(model, "_last_original_obs", None)}
    return {
        "parameters": model.get_parameters(),  # policy (with target networks) and optimizer state dicts
        "variables": {name: _attribute(model, name).detach().clone() for name in variables},  # e.g. log_ent_coef
        "counters": {name: getattr(model, name) for name in _COUNTERS if hasattr(model, name)},
        "last_obs": np.asarray(model._last_obs),
        "last_episode_starts": np.asarray(model._last_episode_starts),
        **{key: np.asarray(value) for key, value in optional.items() if value is not None},
        "replay_buffer": _replay_state(getattr(model, "replay_buffer", None)),
    }


def _restore_model(model: Any, saved: dict[str, Any]) -> None:
    import torch

    model.set_parameters(saved["parameters"], exact_match=True, device="cpu")
    with torch.no_grad():
        for name, value in saved["variables"].items():
            _attribute(model, name).copy_(value)
    for name, value in saved["counters"].items():
        setattr(model, name, value)
    _restore_replay(getattr(model, "replay_buffer", None), saved["replay_buffer"])


def _restore_session(model: Any, venv: Any, payload: dict[str, Any]) -> bool:
    """Load a checkpoint into a freshly built model and env; return whether the run continues
    mid-episode (wherever the simulator state was saved; never on Atari) rather than at a new episode."""
    saved = payload["sb3"]
    _restore_model(model, saved)
    base = _base_env(venv)
    mid_episode = bool(payload["loop"]["mid_episode"]) and continues_mid_episode(base, payload["env_state"])
    _dummy_vec_env(venv)._reset_seeds()  # the seed served the first session; the RNGs come from the checkpoint
    venv.reset()  # builds every wrapper's episode state, which the checkpoint then overwrites
    restore_env_state(base, payload["env_state"], mid_episode=mid_episode)
    _restore_normalizer(venv, saved["normalizer"])
    if mid_episode:
        model._last_obs = saved["last_obs"].numpy().copy()
        model._last_episode_starts = saved["last_episode_starts"].numpy().copy()
        if "last_original_obs" in saved:
            model._last_original_obs = saved["last_original_obs"].numpy().copy()
    else:  # the simulator state cannot be saved (e.g. Atari): a new episode
        model._last_obs = venv.reset()
        model._last_episode_starts = np.ones((venv.num_envs,), dtype=bool)
        norm = _vec_normalize(venv)
        if norm is not None:
            model._last_original_obs = norm.get_original_obs()
    restore_global_rng_state(payload["rng"])
    return mid_episode


# --- the run --------------------------------------------------------------------------------

class _Recorder:
    """Follows the SB3 run (``_callback``): writes finished episodes and periodic metrics as
    they happen, checkpoints at rollout starts, and stops the run at total_steps, when
    ``on_episode`` asks, or — after a checkpoint — on SIGINT/SIGTERM."""

    def __init__(self, config: Config, writer: RunWriter, on_episode: Any, signals: Any, bar: Any, venv: Any,
                 run_dir: Path, payload: dict[str, Any] | None):
        self.config, self.writer, self.on_episode, self.signals, self.bar = config, writer, on_episode, signals, bar
        self.venv, self.run_dir = venv, run_dir
        self.exact = bool(_env_state(venv, config)["exact"])
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.step = 0
        self.interval_steps = 0
        self.elapsed_before = 0.0
        self.resumes: list[dict[str, Any]] = []
        if payload is not None:
            loop = payload["loop"]
            self.step, self.interval_steps = int(loop["step"]), int(loop["interval_steps"])
            self.returns = [float(x) for x in loop["returns"].tolist()]
            self.lengths = [int(x) for x in loop["lengths"].tolist()]
            self.elapsed_before = float(loop["elapsed"])
            self.resumes = list(loop["resumes"])
        self.stopped_early = False
        self.checkpoint_pending = False
        self.game_ended = False  # the last step ended a whole episode (Atari: a whole game)
        self.stop_now = False
        self.start = self.interval_start = time.perf_counter()

    def log_metrics(self) -> None:
        log_interval_metrics(self, {})  # the stream-only diagnostics (TD error, step size, trace) stay empty

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def save_checkpoint(self, model: Any, mid_episode: bool) -> Path:

        payload = {
            "format_version": FORMAT_VERSION,
            "streamx_version": __version__,
            "algo": self.config.algo,
            "env": self.config.env,
            "config": json.dumps(self.config.to_dict(), sort_keys=True),
            "sb3": {**_model_state(model), "normalizer": _normalizer_state(self.venv)},
            "env_state": _env_state(self.venv, self.config),
            "rng": global_rng_state(),
            "loop": {
                "step": self.step,
                "mid_episode": mid_episode,
                "returns": np.asarray(self.returns, dtype=np.float64),
                "lengths": np.asarray(self.lengths, dtype=np.int64),
                "episode_rows": len(self.returns),
                "metric_rows": self.writer.metric_rows,
                "interval_steps": self.interval_steps,
                "elapsed": self.elapsed(),
                "resumes": self.resumes,
            },
        }
        path = write_checkpoint(self.run_dir, self.step, payload, self.config.keep_checkpoints)
        self.checkpoint_pending = False
        return path

    def on_rollout_start(self, model: Any) -> None:
        """Between an update and the next action: where a checkpoint holds the whole state."""
        stopping = self.signals.received is not None
        if stopping or (self.checkpoint_pending and (self.exact or self.game_ended)):
            # Without a simulator state (e.g. Atari) the periodic checkpoint waits for the
            # end of a whole episode; a stop signal does not wait (the resume starts a new episode).
            self.save_checkpoint(model, mid_episode=self.exact)
        self.stop_now = stopping

    def on_step(self, local_vars: dict[str, Any]) -> bool:
        if self.stop_now:  # the checkpoint is written: this step is not part of the run
            return False
        self.step = int(local_vars["self"].num_timesteps)
        self.game_ended = False
        for info in local_vars["infos"]:
            if "episode" in info:  # the raw return of a whole episode (Atari: a whole game)
                episode_return, episode_length = float(info["episode"]["r"]), int(info["episode"]["l"])
                self.returns.append(episode_return)
                self.lengths.append(episode_length)
                self.game_ended = True
                self.writer.episode(self.step, episode_return, episode_length, self.elapsed())
                if self.on_episode is not None and self.on_episode(self.step, episode_return, episode_length):
                    self.stopped_early = True
        if self.step % self.config.log_interval == 0:
            self.log_metrics()
        if self.config.checkpoint_interval and self.step % self.config.checkpoint_interval == 0:
            self.checkpoint_pending = True
        if self.bar is not None and self.step % 1000 == 0:
            self.bar.update(1000)
        # Stop exactly at total_steps (a PPO rollout or DQN train_freq would overshoot); SB3 then
        # skips the update a rollout finishing on this very step would have made.
        return not (self.step >= self.config.total_steps or self.stopped_early)


def _callback(recorder: _Recorder) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class _StreamxCallback(BaseCallback):
        def _on_rollout_start(self) -> None:
            recorder.on_rollout_start(self.model)

        def _on_step(self) -> bool:
            return recorder.on_step(self.locals)

    return _StreamxCallback()


def _build(config: Config) -> tuple[Any, Any, dict[str, Any]]:
    """The seeded SB3 model, its vectorized env and the resolved hyperparameters."""

    sb3 = _sb3()
    hyper = resolve_hyperparameters(config)
    seed_everything(config.seed, config.threads, flush_denormal=bool(hyper.get("flush_denormal")))
    venv = _vec_env(config, hyper)
    try:
        model = getattr(sb3, _family(config.algo).upper())(env=venv, seed=config.seed, device="cpu", verbose=0,
                                                           **_sb3_arguments(hyper))
    except (AssertionError, ValueError, TypeError) as exc:
        venv.close()
        raise ConfigError(f"Stable-Baselines3 rejected the {config.algo} hyperparameters {hyper}: {exc}") from None
    return model, model.get_env(), hyper  # SB3's own wrapping (e.g. VecTransposeImage) included


def train_baseline(config: Config, on_episode: Any = None, payload: dict[str, Any] | None = None) -> Any:
    """Train an SB3 baseline for ``config.total_steps`` agent steps and write its run directory
    (``streamx.run.train`` calls this for ``algo`` in BASELINES), or continue it from the
    checkpoint ``payload``. Returns a ``RunResult`` whose ``agent`` is the SB3 model."""

    model, venv, hyper = _build(config)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    try:
        if payload is None:
            resolved = config.replace(run_dir=str(run_dir), sb3_kwargs=hyper)
            writer = RunWriter(run_dir, resolved.to_dict(), tensorboard=config.tensorboard,
                               versions=versions_record(suite_of(config.env)))
        else:
            loop = payload["loop"]
            writer = RunWriter.reopen(run_dir, extra_fields=(), episode_rows=int(loop["episode_rows"]),
                                      metric_rows=int(loop["metric_rows"]), tensorboard=config.tensorboard,
                                      step=int(loop["step"]))
    except BaseException:
        venv.close()
        raise
    status, fault = "failed", None
    with StopSignals() as signals:
        recorder = _Recorder(config, writer, on_episode, signals, None, venv, run_dir, payload)
        try:
            if payload is not None:
                mid_episode = _restore_session(model, venv, payload)
                recorder.resumes.append({"step": recorder.step, "mid_episode": mid_episode})
            recorder.bar = progress_bar(config, initial=recorder.step)
            model.learn(total_timesteps=config.total_steps - recorder.step, callback=_callback(recorder),
                        log_interval=None, reset_num_timesteps=payload is None)
            if recorder.stop_now:  # a signal: checkpointed at the last rollout start (on_rollout_start)
                status = "interrupted"
            else:
                if recorder.step > recorder.interval_steps:
                    recorder.log_metrics()  # the last, partial interval
                status = "stopped_early" if recorder.stopped_early else "finished"
                model.save(run_dir / "model.zip")  # the final policy, for SB3's own tools
                if hasattr(venv, "obs_rms"):
                    venv.save(str(run_dir / "vecnormalize.pkl"))
        except BaseException as exc:
            fault = exc  # recorded in summary.json; results written so far stay
            raise
        finally:
            if recorder.bar is not None:
                recorder.bar.close()
            writer.summary(run_summary(status, recorder.step, recorder.returns, recorder.elapsed(), recorder.resumes,
                                       fault))
            writer.close()
            venv.close()
            import torch

            torch.set_flush_denormal(False)  # the process's default again (seed_everything set it)
    return RunResult(run_dir, recorder.step, recorder.returns, recorder.lengths, recorder.stopped_early, model,
                     status=status, signal=signals.received)


_RUN_FILES = ("config.json", "versions.json", "episodes.csv", "metrics.csv", "summary.json", "model.zip",
              "vecnormalize.pkl")


def resume_baseline(config: Config, on_episode: Any = None) -> Any:
    """``streamx train --resume`` for a baseline: continue from the newest checkpoint; a run
    with none (killed before its first one, or written by a streamx without baseline checkpoints)
    starts again from step 0
    in its directory (same seed, so the same episodes)."""

    run_dir = Path(str(config.run_dir))
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError:
            summary = {}
        if summary.get("status") in ("finished", "stopped_early"):
            state = str(summary["status"]).replace("_", " ")
            raise ConfigError(f"{run_dir} is a {state} {config.algo} run ({summary.get('steps')} steps); "
                              "nothing to resume — start a new run with another --run-dir")
    _sb3()  # a missing extra fails before anything is touched
    if checkpoint_paths(run_dir):
        payload = latest_checkpoint(run_dir)
        if "sb3" not in payload or payload["algo"] != config.algo or payload["env"] != config.env:
            raise CheckpointError(f"the checkpoint in {run_dir} is not one of this {config.algo} {config.env} run; "
                                  "resume each run from its own directory")
        return train_baseline(config, on_episode, payload)
    print(f"streamx: warning: {run_dir} has no checkpoint yet; restarting the {config.algo} run from step 0",
          file=sys.stderr, flush=True)
    for name in _RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    return train_baseline(config, on_episode)

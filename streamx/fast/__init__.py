"""The fast path: the stream-x agents (MLPs and the MinAtar conv net) with each act/update
fused into one numba kernel.

Per-step overhead dominates streaming RL (one batch-1 update per environment step), so the
fast agents run the same arithmetic as the autograd agents of ``streamx.agents`` in compiled
loops over flat float32 buffers. They are subclasses of the autograd agents, give the same
episodes for the same seed (up to float32 rounding of reductions) and keep their
``state_dict`` format. numba is optional: without it, :func:`fast_path_supported` says so and
the autograd agents are used.

    from streamx.fast import fast_path_supported, make_fast_agent
    ok, why = fast_path_supported(config, env.observation_space, env.action_space)
    agent = make_fast_agent("stream_ac", env.observation_space, env.action_space, config)

Kernels are compiled on first use and cached on disk (``cache=True``): the first run in a
fresh environment compiles for a few seconds, later runs load the cache.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch

from streamx.config import OPTIMIZERS, Config
from streamx.errors import ConfigError

if TYPE_CHECKING:
    from streamx.agents.base import StreamAgent

__all__ = ["fast_path_supported", "make_fast_agent", "numba_available"]


def numba_available() -> bool:
    """Whether numba can be imported (the fast path's only extra dependency)."""
    return importlib.util.find_spec("numba") is not None


def fast_path_supported(config: Config, observation_space: gym.spaces.Space,
                        action_space: gym.spaces.Space | None) -> tuple[bool, str]:
    """Whether the fast agents can run this configuration, and if not, why not.

    Supported: every algorithm and optimizer (obgd, adaptive_obgd, sgd) with the standard MLP
    (1-D observations, any hidden sizes, with or without LayerNorm) or the MinAtar conv net
    (channels-first images other than 84×84), with float32 weights.
    Not supported: the Atari conv net (84×84 images) and non-float32 torch default dtypes.
    """
    if not numba_available():
        return False, "numba is not installed (pip install numba)"
    if config.optimizer not in OPTIMIZERS:
        return False, f"no fast kernel for optimizer '{config.optimizer}'"
    if torch.get_default_dtype() != torch.float32:
        return False, f"the fast kernels are float32, but torch's default dtype is {torch.get_default_dtype()}"
    shape = getattr(observation_space, "shape", None)
    if shape is None or len(shape) not in (1, 3):
        return False, f"observations of shape {shape} have no standard network"
    if len(shape) == 3 and tuple(shape[1:]) == (84, 84):
        return False, ("Atari observations use the Atari conv net; the fast path covers MLPs (1-D "
                       "observations) and the MinAtar conv net only")
    if config.algo in ("stream_q", "stream_sarsa") and not isinstance(action_space, gym.spaces.Discrete):
        return False, f"{config.algo} needs a Discrete action space, got {action_space}"
    if config.algo == "stream_ac" and not (
            isinstance(action_space, gym.spaces.Discrete)
            or (isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1)):
        return False, f"stream_ac needs a Discrete or 1-D Box action space, got {action_space}"
    network = "MLP" if len(shape) == 1 else "MinAtar conv net"
    return True, f"{network} with a supported optimizer: fused numba kernels apply"


def make_fast_agent(algo: str, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                    config: Config | None = None, **overrides: Any) -> StreamAgent:
    """Build the fast agent for ``algo`` (same arguments as :func:`streamx.agents.make_agent`).

    Raises ConfigError, naming the reason, when :func:`fast_path_supported` says no.
    """
    base = config.to_dict() if config is not None else {}
    config = Config.from_dict({**base, **overrides, "algo": algo})
    supported, reason = fast_path_supported(config, observation_space, action_space)
    if not supported:
        raise ConfigError(f"the fast path cannot run this configuration: {reason}; use the autograd agent")
    from streamx.fast.agents import FAST_AGENTS

    return FAST_AGENTS[config.algo](observation_space, action_space, config)

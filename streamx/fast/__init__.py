"""The fast path: the stream-x agents on the paper's standard networks with per-step
overhead removed, chosen automatically (``fast_path=auto``; ``off`` forces autograd).

Per-step overhead dominates streaming RL (one batch-1 update per environment step). Two
mechanisms, each picked by measurement (docs/performance.md):

* MLPs and the MinAtar conv net: each act / update is ONE fused numba kernel over flat float32
  buffers (:mod:`streamx.fast.kernels`, agents in :mod:`streamx.fast.agents`);
* the Atari conv net, whose update is arithmetic-bound: one numba call per forward and per
  backward pass that calls torch's own MKL SGEMM for the matrix products
  (:mod:`streamx.fast.gemm`), or, where torch has no MKL, torch's kernels chained by hand for
  one sample; either way with the act's forward pass reused and the numba optimizer step
  (:mod:`streamx.fast.conv`).

The fast agents are subclasses of the autograd agents, match them in lock-step to float32
rounding (tests/test_fast.py) and keep their ``state_dict`` format. numba is optional:
without it, :func:`fast_path_supported` says so and the autograd agents are used.

    from streamx.fast import fast_path_supported, make_fast_agent
    ok, why = fast_path_supported(config, env.observation_space, env.action_space)
    agent = make_fast_agent("stream_ac", env.observation_space, env.action_space, config)

numba kernels are compiled on first use and cached on disk (``cache=True``): the first run in
a fresh environment compiles only what its network and algorithm need (≈6–10 s on a loaded
2-core machine, docs/performance.md; the Atari path only needs the small optimizer kernels),
later runs load the cache in ≈2 s.
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

__all__ = ["fast_path_supported", "is_atari_shape", "make_fast_agent", "numba_available"]


def numba_available() -> bool:
    """Whether numba can be imported (the fast path's only extra dependency)."""
    return importlib.util.find_spec("numba") is not None


def fast_path_supported(config: Config, observation_space: gym.spaces.Space,
                        action_space: gym.spaces.Space | None) -> tuple[bool, str]:
    """Whether the fast agents can run this configuration, and if not, why not.

    Supported: every algorithm and optimizer (obgd, adaptive_obgd, sgd) with the standard MLP
    (1-D observations, any hidden sizes, with or without LayerNorm), the MinAtar conv net
    (channels-first images other than 84×84) or the Atari conv net (``(C, 84, 84)``), with
    float32 weights. Not supported: non-float32 torch default dtypes.
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
    if config.algo in ("stream_q", "stream_sarsa") and not isinstance(action_space, gym.spaces.Discrete):
        return False, f"{config.algo} needs a Discrete action space, got {action_space}"
    if config.algo == "stream_ac" and not (
            isinstance(action_space, gym.spaces.Discrete)
            or (isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1)):
        return False, f"stream_ac needs a Discrete or 1-D Box action space, got {action_space}"
    if is_atari_shape(shape):
        from streamx.fast import gemm

        how = ("numba kernels calling torch's MKL SGEMM" if gemm.AVAILABLE
               else f"hand-chained torch kernels ({gemm.REASON})")
        return True, f"Atari conv net with a supported optimizer: {how} with the numba optimizer step apply"
    network = "MLP" if len(shape) == 1 else "MinAtar conv net"
    return True, f"{network} with a supported optimizer: fused numba kernels apply"


def is_atari_shape(shape: tuple[int, ...] | None) -> bool:
    """Whether observations of this shape get the Atari conv net (``(C, 84, 84)``, PAPER §3),
    which the fast path runs with :mod:`streamx.fast.conv` rather than the fused numba kernels
    of :mod:`streamx.fast.kernels`."""
    return shape is not None and len(shape) == 3 and tuple(shape[1:]) == (84, 84)


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
    if is_atari_shape(getattr(observation_space, "shape", None)):
        from streamx.fast.conv import CONV_AGENTS

        return CONV_AGENTS[config.algo](observation_space, action_space, config)  # type: ignore[no-any-return]
    from streamx.fast.agents import FAST_AGENTS

    return FAST_AGENTS[config.algo](observation_space, action_space, config)

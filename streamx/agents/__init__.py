"""The stream agents and the factory that builds them (the algorithms: :mod:`streamx.registry`)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from streamx.agents.ac import StreamAC
from streamx.agents.avg import AVG
from streamx.agents.base import StreamAgent
from streamx.agents.q import StreamQ
from streamx.agents.sarsa import StreamSARSA
from streamx.agents.td import StreamTD
from streamx.config import Config
from streamx.errors import ConfigError
from streamx.registry import algorithm_class

__all__ = ["AVG", "StreamAC", "StreamAgent", "StreamQ", "StreamSARSA", "StreamTD", "build_agent", "make_agent"]


def make_agent(algo: str, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
               config: Config | None = None, **overrides: Any) -> StreamAgent:
    """Build an agent: ``make_agent("stream_q", env.observation_space, env.action_space, lr=0.5)``.

    ``algo`` is any registered algorithm (:func:`streamx.registry.algorithm_names`). ``config``
    defaults to the paper's hyperparameters; ``overrides`` change single fields. The network's
    initial weights are drawn from the global torch RNG (seed it first).
    """
    base = config.to_dict() if config is not None else {}
    return build_agent(Config.from_dict({**base, **overrides, "algo": algo}), observation_space, action_space)


def build_agent(config: Config, observation_space: gym.spaces.Space,
                action_space: gym.spaces.Space | None) -> StreamAgent:
    """The agent for ``config``: the fused fast path (``streamx.fast``) when ``config.fast_path``
    allows it and it supports the configuration, else the algorithm's own (autograd) class."""
    cls = algorithm_class(config.algo)
    if config.fast_path != "off":
        from streamx.fast import fast_path_supported, make_fast_agent

        supported, reason = fast_path_supported(config, observation_space, action_space)
        if supported:
            return make_fast_agent(config.algo, observation_space, action_space, config)
        if config.fast_path == "on":
            raise ConfigError(f"fast_path=on, but {reason}; use fast_path=auto or fast_path=off")
    return cls(observation_space, action_space, config)

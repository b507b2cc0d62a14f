"""streamx: streaming deep reinforcement learning (stream TD, Q, SARSA and AC with λ-traces).

The public names below are imported on first use, so that ``import streamx.cli`` (the
``streamx`` command) starts without loading torch: a Ctrl-C while the program starts ends with
one line, and ``streamx --help`` is quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "AdaptiveObGD": "streamx.optim", "ObGD": "streamx.optim", "TracedSGD": "streamx.optim",
    "CheckpointError": "streamx.errors", "ConfigError": "streamx.errors", "EnvironmentFault": "streamx.errors",
    "NonFiniteError": "streamx.errors", "StreamxError": "streamx.errors",
    "Config": "streamx.config",
    "StreamAC": "streamx.agents", "StreamAgent": "streamx.agents", "StreamQ": "streamx.agents",
    "StreamSARSA": "streamx.agents", "StreamTD": "streamx.agents", "make_agent": "streamx.agents",
    "make_env": "streamx.envs",
    "resolve_config": "streamx.run", "train": "streamx.run",
}

if TYPE_CHECKING:
    from streamx.agents import StreamAC, StreamAgent, StreamQ, StreamSARSA, StreamTD, make_agent
    from streamx.config import Config
    from streamx.envs import make_env
    from streamx.errors import CheckpointError, ConfigError, EnvironmentFault, NonFiniteError, StreamxError
    from streamx.optim import AdaptiveObGD, ObGD, TracedSGD
    from streamx.run import resolve_config, train


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'streamx' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "AdaptiveObGD",
    "CheckpointError",
    "Config",
    "ConfigError",
    "EnvironmentFault",
    "NonFiniteError",
    "ObGD",
    "StreamAC",
    "StreamAgent",
    "StreamQ",
    "StreamSARSA",
    "StreamTD",
    "StreamxError",
    "TracedSGD",
    "make_agent",
    "make_env",
    "resolve_config",
    "train",
]

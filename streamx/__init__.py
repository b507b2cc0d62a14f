"""streamx: streaming deep reinforcement learning (stream TD, Q, SARSA and AC with λ-traces)."""

__version__ = "0.1.0"  # before the imports: streamx.run reads it

from streamx.agents import StreamAC, StreamAgent, StreamQ, StreamSARSA, StreamTD, make_agent
from streamx.config import Config
from streamx.envs import make_env
from streamx.errors import CheckpointError, ConfigError, EnvironmentFault, NonFiniteError, StreamxError
from streamx.optim import AdaptiveObGD, ObGD, TracedSGD
from streamx.run import resolve_config, train

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

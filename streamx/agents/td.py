"""Stream TD(λ) (PAPER §2): policy evaluation of a state-value function with ObGD.

``δ = r + γ(1 − done) v(s') − v(s)``, trace of ``∇v(s)``, κ = kappa_value. The behaviour
policy is uniform random over the action space (the ETT prediction task has a one-action
dummy space; ``action_space=None`` is accepted for action-free streams).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from streamx.agents.base import StreamAgent, build_network, td_target_mask
from streamx.config import Config

__all__ = ["StreamTD"]


class StreamTD(StreamAgent):
    algo = "stream_td"
    extra_metrics = ("prediction",)
    acting_network = None  # a prediction algorithm: it learns v, it has no policy
    action_spaces = ("discrete", "box", "none", "other")  # behaviour: uniform random over any space
    fast_agents: ClassVar[dict[str, str]] = {
        "mlp": "streamx.fast.agents:FastStreamTD",
        "atari": "streamx.fast.conv:ConvStreamTD",
    }

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        self.value_network = build_network(observation_space, 1, config)
        self.optimizer = self._add_learner("value_network", self.value_network, config.kappa_value)
        if action_space is not None:
            action_space.seed(config.seed)

    def _act(self, obs: np.ndarray, deterministic: bool) -> Any:
        return None if self.action_space is None else self.action_space.sample()

    def _check_action(self, action: Any) -> Any:
        return action  # evaluation of the behaviour policy: the action is not used

    def predict(self, obs: Any) -> float:
        """The current value estimate ``v(obs)`` (``obs`` checked as in :meth:`act`)."""
        return self._predict(self._check_obs(obs, "obs"))

    @torch.no_grad()
    def _predict(self, obs: np.ndarray) -> float:
        return float(self.value_network(self._as_batch(obs))[0, 0])

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        values = self.value_network(self._as_batch(obs, next_obs))[:, 0]
        bootstrap = td_target_mask(terminated, truncated, self.config)
        td_error = float(reward) + self.config.gamma * bootstrap * values[1].detach() - values[0].detach()
        self._check_finite(td_error)
        self.value_network.zero_grad(set_to_none=True)
        values[0].backward()
        self.optimizer.step(td_error, reset=bool(terminated or truncated))
        self.num_updates += 1
        return {**self._step_metrics(td_error, self.optimizer), "prediction": float(values[0].detach())}

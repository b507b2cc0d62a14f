"""Shared core of Stream Q(λ) and Stream SARSA(λ): an action-value network learned with ObGD
and ε-greedy behaviour (PAPER §2). The two differ only in the bootstrap action and in when
traces are cut, which subclasses define."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from streamx.agents.base import StreamAgent, build_network, td_target_mask
from streamx.config import Config

__all__ = ["ActionValueAgent"]


class ActionValueAgent(StreamAgent):
    """ε-greedy control with one action-value network ``Q(s, ·)`` and ObGD (κ = kappa_value)."""

    extra_metrics = ("epsilon",)

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config):
        super().__init__(observation_space, action_space, config)
        self.num_actions = self._require_discrete(action_space, self.algo)
        self.q_network = build_network(observation_space, self.num_actions, config)
        self.optimizer = self._add_learner("q_network", self.q_network, config.kappa_value)

    @property
    def epsilon(self) -> float:
        """ε decays linearly from epsilon_start to epsilon_end over ``exploration_steps`` updates
        (``exploration_fraction × total_steps`` when that is None), then stays."""
        c = self.config
        horizon = c.exploration_steps if c.exploration_steps is not None else c.exploration_fraction * c.total_steps
        progress = min(1.0, self.num_updates / horizon)
        return c.epsilon_start + progress * (c.epsilon_end - c.epsilon_start)

    def _epsilon_greedy(self, q_values: Tensor) -> int:
        if self.np_random.random() < self.epsilon:
            return int(self.np_random.integers(self.num_actions))
        return int(q_values.argmax())

    def q_values(self, obs: Any) -> Tensor:
        """``Q(obs, ·)`` as a 1-D tensor (``obs`` checked as in :meth:`act`)."""
        return self._q_values(self._check_obs(obs, "obs"))

    @torch.no_grad()
    def _q_values(self, obs: np.ndarray) -> Tensor:
        return self.q_network(self._as_batch(obs))[0]

    def _act(self, obs: np.ndarray, deterministic: bool) -> int:
        q_values = self._q_values(obs)
        if deterministic:
            return int(q_values.argmax())
        return self._epsilon_greedy(q_values)

    @abstractmethod
    def _bootstrap_value(self, next_q_values: Tensor, episode_continues: bool) -> Tensor:
        """The value of ``s'`` in the TD target (``max_a' Q`` or ``Q(s', a')``)."""

    @abstractmethod
    def _cut_traces(self, action: int, q_values: Tensor) -> bool:
        """Whether traces are cut after this update although the episode goes on."""

    def _update(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        episode_end = bool(terminated or truncated)
        q_both = self.q_network(self._as_batch(obs, next_obs))  # s and s' in one pass
        q_sa = q_both[0, action]
        next_q = q_both[1].detach()
        bootstrap = td_target_mask(terminated, truncated, self.config)
        target_value = self._bootstrap_value(next_q, not episode_end) if bootstrap else next_q.new_zeros(())
        td_error = float(reward) + self.config.gamma * bootstrap * target_value - q_sa.detach()
        reset = episode_end or self._cut_traces(action, q_both[0].detach())

        self._check_finite(td_error)
        self.q_network.zero_grad(set_to_none=True)
        q_sa.backward()
        self.optimizer.step(td_error, reset=reset)
        self.num_updates += 1
        return {**self._step_metrics(td_error, self.optimizer), "epsilon": self.epsilon}

"""Shared core of Stream Q(λ) and Stream SARSA(λ): an action-value network learned with ObGD
and ε-greedy behaviour (PAPER §2). The two differ only in the bootstrap action and in when
traces are cut, which subclasses define."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from streamx.agents.base import StreamAgent, build_network, td_target_mask
from streamx.config import EXPLORATION_FIELDS, STREAM_X_FIELDS, Config

__all__ = ["ActionValueAgent", "QValues"]

QValues = Tensor | np.ndarray
"""What the hooks get: ``Q(s, ·)`` as a 1-D torch tensor (autograd path) or float32 numpy array
(fast path). Write hooks with what both have (indexing, ``.max()``, ``.argmax()``, ``.mean()``)."""


class ActionValueAgent(StreamAgent):
    """ε-greedy control with one action-value network ``Q(s, ·)`` and ObGD (κ = kappa_value).

    A new value-based algorithm is a subclass that defines the two hooks
    :meth:`_bootstrap_value` and :meth:`_cut_traces` (docs/algorithms.md). Such a subclass runs
    on the fast path too, where the hooks get float32 ``numpy`` arrays instead of torch tensors:
    write them with operations both have (indexing, ``.max()``, ``.argmax()``, ``.mean()``,
    ``.sum()``, arithmetic), or set ``numpy_hooks = False`` to keep the subclass on the autograd path.
    """

    extra_metrics = ("epsilon",)
    acting_network = "q_network"
    action_spaces = ("discrete",)
    config_fields = (*STREAM_X_FIELDS, *EXPLORATION_FIELDS)
    policy_description = "greedy"
    # The fast path (streamx.fast): for a subclass that only defines the hooks below, a fast class
    # is composed of the subclass and the mixin of the network's kind.
    fast_mixins: ClassVar[dict[str, str]] = {
        "mlp": "streamx.fast.agents:_FastActionValue",
        "atari": "streamx.fast.conv:_ConvActionValue",
    }
    fast_hooks: ClassVar[tuple[str, ...]] = ("_bootstrap_value", "_cut_traces")
    numpy_hooks: ClassVar[bool] = True
    """Whether the hooks also accept float32 numpy arrays (the fast path's Q-values)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        assert isinstance(action_space, gym.spaces.Discrete)  # checked by StreamAgent against action_spaces
        self.num_actions = int(action_space.n)
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

    def _epsilon_greedy(self, q_values: QValues) -> int:
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
    def _bootstrap_value(self, next_q_values: QValues, episode_continues: bool) -> Any:
        """The value of ``s'`` in the TD target (``max_a' Q`` or ``Q(s', a')``), from ``Q(s', ·)``
        (1-D; a numpy array on the fast path). Called only when the target bootstraps."""

    @abstractmethod
    def _cut_traces(self, action: int, q_values: QValues) -> bool:
        """Whether traces are cut after this update although the episode goes on, from the action
        taken and ``Q(s, ·)`` before the update (1-D; a numpy array on the fast path)."""

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

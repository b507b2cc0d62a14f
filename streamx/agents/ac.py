"""Stream AC(λ) (PAPER §2): actor-critic with a separate critic and actor, each with ObGD.

Both are driven by the critic's TD error ``δ = r + γ(1 − done) v(s') − v(s)``. The critic's
trace accumulates ``∇v(s)`` (κ = kappa_value); the actor's accumulates
``∇[log π(a|s) + τ·sign(δ)·H(π(·|s))]`` (κ = kappa_policy), so its step is
``α̂(δ∇log π + τ|δ|∇H)``. Continuous actions: diagonal Gaussian with a linear mean head and a
softplus standard-deviation head, no squashing (the env wrapper clips). Discrete actions:
softmax over a linear head; by default (``policy_prob_clamp``) the log-probabilities are of the
probabilities clamped to [eps, 1 − eps] (eps = float32 machine epsilon), as the paper's
categorical built from probabilities takes them, so a saturated action gets no gradient through
its log-probability (PAPER §9). Log-probabilities and entropies are written out in closed form —
no distribution objects in the per-step path.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamx.agents.base import StreamAgent, build_network, td_target_mask
from streamx.config import STREAM_X_FIELDS, Config
from streamx.nn import init_network

__all__ = ["CLAMP_EPS", "CategoricalPolicy", "GaussianPolicy", "StreamAC"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
CLAMP_EPS = float(torch.finfo(torch.float32).eps)
"""The clamp of a categorical's probabilities before their logarithm (torch's ``clamp_probs``)."""
_LOG_CLAMP_LOW, _LOG_CLAMP_HIGH = math.log(CLAMP_EPS), math.log1p(-CLAMP_EPS)


class GaussianPolicy(nn.Module):
    """Diagonal Gaussian: ``mean = W_μ h``, ``std = softplus(W_σ h)`` on a shared trunk."""

    def __init__(self, trunk: nn.Module, features: int, action_dim: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.mean_head = nn.Linear(features, action_dim)
        self.std_head = nn.Linear(features, action_dim)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.trunk(obs)
        return self.mean_head(hidden), F.softplus(self.std_head(hidden))

    def sample(self, obs: Tensor, generator: torch.Generator, deterministic: bool) -> Tensor:
        mean, std = self(obs)
        if deterministic:
            return mean[0]
        return (mean + std * torch.randn(mean.shape, generator=generator))[0]

    def log_prob_and_entropy(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = self(obs)
        log_std = torch.log(std)
        log_prob = (-0.5 * ((action - mean) / std) ** 2 - log_std - _HALF_LOG_2PI).sum()
        entropy = (0.5 + _HALF_LOG_2PI + log_std).sum()
        return log_prob, entropy


class CategoricalPolicy(nn.Module):
    """Softmax policy over a linear head on the trunk. With ``prob_clamp`` the log-probabilities
    (in log π(a) and in the entropy −Σ π log π) are of π clamped to [CLAMP_EPS, 1 − CLAMP_EPS]."""

    def __init__(self, trunk: nn.Module, features: int, num_actions: int, prob_clamp: bool = True) -> None:
        super().__init__()
        self.trunk = trunk
        self.logits_head = nn.Linear(features, num_actions)
        self.prob_clamp = prob_clamp

    def forward(self, obs: Tensor) -> Tensor:
        return self.logits_head(self.trunk(obs))

    def sample(self, obs: Tensor, generator: torch.Generator, deterministic: bool) -> Tensor:
        logits = self(obs)[0]
        if deterministic:
            return logits.argmax()
        return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[0]

    def log_prob_and_entropy(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        log_softmax = torch.log_softmax(self(obs)[0], dim=-1)
        probs = log_softmax.exp()
        # log clamp(π, eps, 1 − eps) taken as a clamp of log π (the log is monotonic: the same
        # values and the same zero gradient outside the clamp, without log(softmax)'s rounding)
        log_probs = log_softmax.clamp(_LOG_CLAMP_LOW, _LOG_CLAMP_HIGH) if self.prob_clamp else log_softmax
        entropy = -(probs * log_probs).sum()
        return log_probs[action], entropy


def _hidden_width(trunk: nn.Module, observation_space: gym.spaces.Space) -> int:
    shape = observation_space.shape
    assert shape is not None  # build_network refused a space without a shape
    with torch.no_grad():
        return int(trunk(torch.zeros(1, *shape)).shape[-1])


class StreamAC(StreamAgent):
    algo = "stream_ac"
    extra_metrics = ("policy_effective_step_size", "policy_trace_norm", "entropy")
    acting_network = "actor"
    action_spaces = ("discrete", "box")
    config_fields = (*STREAM_X_FIELDS, "kappa_policy", "entropy_coef", "policy_prob_clamp")
    policy_description = "mean action / most likely action"
    fast_agents: ClassVar[dict[str, str]] = {
        "mlp": "streamx.fast.agents:FastStreamAC",
        "atari": "streamx.fast.conv:ConvStreamAC",
    }

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        self.critic = build_network(observation_space, 1, config)
        trunk = build_network(observation_space, None, config, initialize=False)  # init with the heads below
        features = _hidden_width(trunk, observation_space)
        if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.continuous = True
            self.actor: GaussianPolicy | CategoricalPolicy = GaussianPolicy(trunk, features, action_space.shape[0])
        elif isinstance(action_space, gym.spaces.Discrete):
            self.continuous = False
            self.actor = CategoricalPolicy(trunk, features, int(action_space.n), config.policy_prob_clamp)
        else:  # pragma: no cover - StreamAgent checked the space against action_spaces
            raise AssertionError(action_space)
        init_network(self.actor, sparse=config.sparse_init, sparsity=config.sparsity)
        self.critic_optimizer = self._add_learner("critic", self.critic, config.kappa_value)
        self.actor_optimizer = self._add_learner("actor", self.actor, config.kappa_policy)

    @torch.no_grad()
    def _act(self, obs: np.ndarray, deterministic: bool) -> Any:
        action = self.actor.sample(self._as_batch(obs), self.torch_generator, deterministic)
        return action.numpy() if self.continuous else int(action)

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        values = self.critic(self._as_batch(obs, next_obs))[:, 0]  # v(s), v(s') in one pass
        bootstrap = td_target_mask(terminated, truncated, self.config)
        td_error = float(reward) + self.config.gamma * bootstrap * values[1].detach() - values[0].detach()

        action_tensor = torch.from_numpy(action) if self.continuous else torch.as_tensor(action)
        log_prob, entropy = self.actor.log_prob_and_entropy(self._as_batch(obs), action_tensor)
        actor_objective = log_prob + self.config.entropy_coef * torch.sign(td_error) * entropy

        self._check_finite(td_error)
        # Critic and actor have disjoint parameters: one backward fills both gradients.
        self.critic.zero_grad(set_to_none=True)
        self.actor.zero_grad(set_to_none=True)
        (values[0] + actor_objective).backward()
        episode_end = bool(terminated or truncated)
        self.critic_optimizer.step(td_error, reset=episode_end)
        self.actor_optimizer.step(td_error, reset=episode_end)
        self.num_updates += 1
        return {**self._step_metrics(td_error, self.critic_optimizer),
                **self._step_metrics(td_error, self.actor_optimizer, prefix="policy_"),
                "entropy": float(entropy.detach())}

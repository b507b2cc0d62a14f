"""A deliberately naive stream-x agent: the per-step procedure of PAPER §1–§2 written the
straightforward way, as the baseline ``streamx bench`` measures the fast path against.

It stands in for the authors' original code (which streamx must not copy, PAPER header): the
same networks (``streamx.nn``), wrappers (``streamx.envs.make_env``) and math, with the
per-step habits that make such code slow, taken from the description in PAPER §8:

* the ObGD step (PAPER §1.1) is a Python loop over parameter tensors that reads each trace's
  L1 norm back to the host (``.item()``) every step, then a second loop for the weights;
* ``update`` runs two separate forward passes, for ``s`` (with autograd) and ``s'``;
* Stream AC builds ``torch.distributions.Normal`` / ``Categorical`` objects at every ``act``
  and every ``update``.

It implements the same updates as ``streamx.agents`` (tests/test_bench.py checks that its
first updates agree with the autograd agent's), so the measured ratios compare equal learning.
Only what the benchmark needs is here: Stream Q(λ) and Stream AC(λ), ObGD.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from streamx.agents.base import build_network
from streamx.config import Config

__all__ = ["NaiveObGD", "NaiveStreamAC", "NaiveStreamQ", "make_naive_agent"]


class NaiveObGD:
    """ObGD (PAPER §1.1) with per-tensor loops and a host read per tensor."""

    def __init__(self, parameters: list[nn.Parameter], lr: float, gamma: float, lamda: float, kappa: float):
        self.parameters = parameters
        self.lr, self.gamma, self.lamda, self.kappa = lr, gamma, lamda, kappa
        self.traces = [torch.zeros_like(p) for p in parameters]
        self.effective_step_size = lr

    @torch.no_grad()
    def step(self, td_error: float, reset: bool) -> float:
        trace_l1 = 0.0
        for p, trace in zip(self.parameters, self.traces):
            trace.mul_(self.gamma * self.lamda).add_(p.grad)
            trace_l1 += trace.abs().sum().item()  # one host read per tensor
        bound = self.lr * self.kappa * max(abs(td_error), 1.0) * trace_l1
        step_size = self.lr / max(bound, 1.0)
        for p, trace in zip(self.parameters, self.traces):
            p.data.add_(trace, alpha=step_size * td_error)
            if reset:
                trace.zero_()
        self.effective_step_size = step_size
        return step_size


def _discount(config: Config, terminated: bool, truncated: bool) -> float:
    done = terminated or (truncated and not config.bootstrap_on_truncation)
    return 0.0 if done else config.gamma


class NaiveStreamQ:
    """Stream Q(λ) (PAPER §2): ε-greedy, Watkins' trace cut, ObGD(κ = kappa_value)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Discrete, config: Config):
        self.config = config
        self.num_actions = int(action_space.n)
        self.q_network = build_network(observation_space, self.num_actions, config)
        self.optimizer = NaiveObGD(list(self.q_network.parameters()), config.lr, config.gamma, config.lamda,
                                   config.kappa_value)
        self.rng = np.random.default_rng(config.seed)
        self.num_updates = 0

    def epsilon(self) -> float:
        c = self.config
        progress = min(1.0, self.num_updates / (c.exploration_fraction * c.total_steps))
        return c.epsilon_start + progress * (c.epsilon_end - c.epsilon_start)

    def act(self, obs: Any) -> int:
        with torch.no_grad():
            q_values = self.q_network(torch.tensor(np.asarray(obs), dtype=torch.float32).unsqueeze(0))[0]
        if self.rng.random() < self.epsilon():
            return int(self.rng.integers(self.num_actions))
        return int(q_values.argmax().item())

    def update(self, obs: Any, action: int, reward: float, next_obs: Any, terminated: bool,
               truncated: bool) -> dict[str, float]:
        q_values = self.q_network(torch.tensor(np.asarray(obs), dtype=torch.float32).unsqueeze(0))[0]
        with torch.no_grad():
            next_q = self.q_network(torch.tensor(np.asarray(next_obs), dtype=torch.float32).unsqueeze(0))[0]
        td_error = reward + _discount(self.config, terminated, truncated) * next_q.max().item() \
            - q_values[action].item()
        greedy = int(q_values.argmax().item())
        self.q_network.zero_grad()
        q_values[action].backward()
        reset = terminated or truncated or action != greedy
        step_size = self.optimizer.step(td_error, reset)
        self.num_updates += 1
        return {"td_error": td_error, "effective_step_size": step_size}


class NaiveStreamAC:
    """Stream AC(λ) (PAPER §2) with distribution objects: critic ObGD(κ_value), actor
    ObGD(κ_policy) on ``∇[log π(a|s) + τ·sign(δ)·H]``."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space, config: Config):
        self.config = config
        self.continuous = isinstance(action_space, gym.spaces.Box)
        out = int(action_space.shape[0]) if self.continuous else int(action_space.n)
        self.critic = build_network(observation_space, 1, config)
        trunk = build_network(observation_space, None, config, initialize=False)
        with torch.no_grad():
            features = int(trunk(torch.zeros(1, *observation_space.shape)).shape[-1])
        self.actor = nn.ModuleDict({"trunk": trunk, "mean": nn.Linear(features, out)})
        if self.continuous:
            self.actor["std"] = nn.Linear(features, out)
        from streamx.nn import init_network

        init_network(self.actor, sparse=config.sparse_init, sparsity=config.sparsity)
        self.critic_optimizer = NaiveObGD(list(self.critic.parameters()), config.lr, config.gamma, config.lamda,
                                          config.kappa_value)
        self.actor_optimizer = NaiveObGD(list(self.actor.parameters()), config.lr, config.gamma, config.lamda,
                                         config.kappa_policy)
        self.generator = torch.Generator().manual_seed(config.seed)

    def distribution(self, obs: Any) -> torch.distributions.Distribution:
        hidden = self.actor["trunk"](torch.tensor(np.asarray(obs), dtype=torch.float32).unsqueeze(0))
        if self.continuous:
            return Normal(self.actor["mean"](hidden)[0], nn.functional.softplus(self.actor["std"](hidden)[0]))
        return Categorical(logits=self.actor["mean"](hidden)[0])

    def act(self, obs: Any) -> Any:
        with torch.no_grad():
            dist = self.distribution(obs)
            if self.continuous:
                return (dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=self.generator)).numpy()
            return int(torch.multinomial(dist.probs, 1, generator=self.generator).item())

    def update(self, obs: Any, action: Any, reward: float, next_obs: Any, terminated: bool,
               truncated: bool) -> dict[str, float]:
        value = self.critic(torch.tensor(np.asarray(obs), dtype=torch.float32).unsqueeze(0))[0, 0]
        with torch.no_grad():
            next_value = self.critic(torch.tensor(np.asarray(next_obs), dtype=torch.float32).unsqueeze(0))[0, 0]
        td_error = reward + _discount(self.config, terminated, truncated) * next_value.item() - value.item()
        dist = self.distribution(obs)
        action_tensor = torch.as_tensor(np.asarray(action), dtype=torch.float32 if self.continuous else torch.long)
        log_prob, entropy = dist.log_prob(action_tensor).sum(), dist.entropy().sum()
        objective = log_prob + self.config.entropy_coef * float(np.sign(td_error)) * entropy
        self.critic.zero_grad()
        self.actor.zero_grad()
        value.backward()
        objective.backward()
        reset = terminated or truncated
        step_size = self.critic_optimizer.step(td_error, reset)
        policy_step_size = self.actor_optimizer.step(td_error, reset)
        return {"td_error": td_error, "effective_step_size": step_size,
                "policy_effective_step_size": policy_step_size, "entropy": entropy.item()}


NAIVE_AGENTS: dict[str, type] = {"stream_q": NaiveStreamQ, "stream_ac": NaiveStreamAC}


def make_naive_agent(config: Config, observation_space: gym.spaces.Space, action_space: gym.spaces.Space) -> Any:
    """The naive agent for ``config.algo`` (stream_q or stream_ac); its networks' initial
    weights are drawn from the global torch RNG as streamx's are."""
    if config.algo not in NAIVE_AGENTS:
        raise ValueError(f"the naive baseline has stream_q and stream_ac only, not {config.algo}")
    return NAIVE_AGENTS[config.algo](observation_space, action_space, config)

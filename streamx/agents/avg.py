"""AVG — Action Value Gradient (Vasan, Elsayed et al., "Deep Policy Gradient Methods Without Batch
Updates, Target Networks, or Replay Buffers", NeurIPS 2024, arXiv 2411.15370).

An incremental actor-critic for continuous actions: one update per transition, batch size 1, no
replay buffer, no target network, no eligibility trace. The actor is trained with the
reparameterization (action-value) gradient through a learned action-value critic ``Q(s, a)``, with
a fixed entropy bonus, as in SAC but with a single Q network and nothing stored.

References below are to the paper's parts by name: Algorithm 1 (AVG), the section on normalization
and scaling (observation normalization, penultimate normalization, scaled TD errors), the table
comparing SAC and AVG, and the appendix's hyperparameter tables. Where the paper leaves a detail
open, the choice made here is marked **(chosen here)**.

The update (Algorithm 1)
    For the transition ``(s, a, r, s')`` (``a`` the action taken, sampled when acting):

    1. Sample a fresh next action ``a' ~ π_θ(·|s')`` and form the entropy-augmented target
       ``y = r + γ·m·(Q_φ(s', a') − α log π_θ(a'|s'))`` (``m`` = 0 when ``s'`` is terminal; see
       *Episode ends*). ``y`` is a constant (semi-gradient; no target network).
    2. TD error ``δ = y − Q_φ(s, a)``; scaled ``δ̃ = δ / σ_δ`` (*TD-error scaling* below).
    3. Critic: one Adam step on ``L_Q(φ) = ½ (y − Q_φ(s, a))² / σ_δ²`` = ``½ δ̃²``, i.e. along
       ``δ̃ ∇_φ Q_φ(s, a) / σ_δ`` (a semi-gradient TD step on the scaled error; the squared-loss
       form with ``δ̃`` in it **(chosen here)**; Adam normalizes the step's overall scale).
    4. Actor: a fresh reparameterized sample ``ã = tanh(μ_θ(s) + σ_θ(s) ⊙ ε)``, ``ε ~ N(0, I)``,
       and one Adam step on ``L_π(θ) = α log π_θ(ã|s) − Q_φ(s, ã)``, differentiated through ``ã``.
       The actor step follows the critic step, so ``Q_φ`` here is the just-updated critic
       **(order: chosen here; Algorithm 1 lists the critic update first)**. ``a'`` and ``ã`` come
       from the same (pre-update) actor, drawn together.

Policy: squashed (tanh) Gaussian
    ``u ~ N(μ_θ(s), diag σ_θ(s)²)``, ``ã = tanh(u)`` in ``[-1, 1]^d``, with
    ``log π(ã|s) = Σ_i [log N(u_i; μ_i, σ_i) − log(1 − tanh²(u_i))]``, the correction written as
    ``2(log 2 − u − softplus(−2u))`` for numerical stability. ``σ_θ = exp(clamp(W_σ h, −20, 2))``
    **(the log-std head and its clamp: chosen here, SAC's usual bounds)**. The environment gets the
    affine image of ``ã`` on the action box, ``low + (ã + 1)(high − low)/2`` — the identity on the
    ``[-1, 1]`` boxes of the paper's tasks **(the rescaling to other boxes: chosen here)**;
    ``log π`` is that of ``ã`` on ``[-1, 1]`` (the paper's quantity), and the critic sees ``ã``
    (the taken action mapped back to ``[-1, 1]``). ``deterministic`` acting gives ``tanh(μ_θ(s))``.

Networks (appendix hyperparameter tables)
    Actor and critic are separate MLPs, 2 hidden layers of 256 units, Leaky ReLU (slope 0.01,
    torch's default), orthogonal initialization (gain 1, zero biases **(gain and biases: chosen
    here)**). Actor: ``s → 256 → 256 → pnorm →`` mean head and log-std head. Critic:
    ``[s, a] → 256 → 256 → pnorm → Q``. No LayerNorm, no sparse initialization (those are stream-x
    stabilizers, not AVG's).

Penultimate normalization (section on normalization and scaling)
    The last hidden activation ``h`` is divided by its Euclidean norm before the output layer(s):
    ``h / max(‖h‖₂, 1e-12)``, in both networks (``AVGSettings.penultimate_normalization``).

Observation normalization (section on normalization and scaling)
    Welford running mean and variance of the observations, ``(o − μ)/√(σ² + ε)``. In streamx
    this is the environment wrapper :class:`streamx.wrappers.NormalizeObservation`, applied by
    :func:`streamx.envs.make_env` when ``config.obs_normalization`` is true; AVG does **not**
    normalize again. Run AVG with ``obs_normalization=true``.

TD-error scaling (section on normalization and scaling, after Schaul et al. 2021)
    ``σ_δ² = Var[R] + Var[γ_t] · E[G²]``: the variance of the rewards, the variance of the
    per-step discounts ``γ_t = γ·m_t`` (``γ`` on ordinary steps, 0 where the target does not
    bootstrap) and the mean of the squared returns, all as running (Welford) statistics updated
    once per transition before ``σ_δ`` is read, so the current transition counts. The variances
    are the unbiased ones (``n − 1``). ``G`` is the discounted return of a whole episode from
    its first step, ``Σ_k γ_1⋯γ_k · r_{k+1}``, added to ``E[G²]`` when the episode ends (the
    returns from every later state would need the episode's rewards stored) **(which returns
    feed E[G²]: chosen here)**; until one episode has ended ``E[G²] = 0``. ``σ_δ = 1`` (no
    scaling) until two rewards were seen, and when ``σ_δ² = 0``. See :class:`TDErrorScaler`.
    This replaces stream-x's reward scaling: run AVG with ``reward_scaling=false`` (the
    :class:`~streamx.wrappers.ScaleReward` wrapper would scale the rewards a second time).

Optimizer and hyperparameters (appendix hyperparameter tables; :class:`AVGSettings`)
    Adam for each network, ``β₁ = 0`` (no momentum), ``β₂ = 0.999``, ``ε = 1e-8``; actor step
    size 0.0063, critic step size 0.0087; entropy coefficient ``α = 0.07``, fixed (not learned,
    unlike SAC); ``γ = 0.99``.

Episode ends
    Termination never bootstraps; truncation is treated as termination unless
    ``config.bootstrap_on_truncation``, as for every streamx agent
    (:func:`~streamx.agents.base.td_target_mask`; with the time feature the limit is part of the
    state) **(streamx's convention)**. ``m`` above is that mask.

Metrics returned by ``update``
    ``td_error``: the unscaled ``δ`` (in reward units, comparable across algorithms);
    ``effective_step_size``: the critic's Adam step size (constant; AVG bounds no step);
    ``trace_norm``: 0.0 (AVG keeps no eligibility trace); ``td_error_scale``: ``σ_δ``;
    ``entropy``: ``−log π(ã|s)``, the one-sample entropy estimate of the squashed policy at ``s``.

Settings from :class:`~streamx.config.Config`
    AVG's own hyperparameters live in :class:`AVGSettings` (defaults: the paper's). Built from a
    Config by :meth:`AVGSettings.from_config`: ``gamma`` ← ``config.gamma``; ``hidden_sizes`` ←
    ``config.hidden_sizes`` only when it differs from Config's default ``[128, 128]`` (otherwise
    the paper's 256, 256); ``seed`` seeds the agent's own generators (initial weights and every
    sampled action, :class:`~streamx.agents.base.StreamAgent`); ``bootstrap_on_truncation`` as
    above. Config's stream-x fields (``lr``, ``lamda``, ``kappa_*``, ``entropy_coef``,
    ``optimizer``, ``sparse_init``, ``layer_norm``, …) are not read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamx.agents.base import StreamAgent, td_target_mask
from streamx.config import Config
from streamx.errors import ConfigError

__all__ = ["AVG", "AVGSettings", "PenultimateNorm", "QNetwork", "SquashedGaussianPolicy", "TDErrorScaler",
           "squashed_log_prob"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_NORM_EPS = 1e-12


@dataclass(frozen=True)
class AVGSettings:
    """AVG's hyperparameters; the defaults are the paper's (appendix hyperparameter tables)."""

    actor_lr: float = 0.0063
    """Adam step size of the actor."""
    critic_lr: float = 0.0087
    """Adam step size of the critic."""
    beta1: float = 0.0
    """Adam's first-moment decay β₁ (0: no momentum, as the paper uses)."""
    beta2: float = 0.999
    """Adam's second-moment decay β₂."""
    adam_eps: float = 1e-8
    """Adam's ε (torch's default)."""
    entropy_coef: float = 0.07
    """Entropy coefficient α, fixed (in the TD target and the actor objective)."""
    gamma: float = 0.99
    """Discount factor γ."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and of the critic."""
    penultimate_normalization: bool = True
    """Divide the last hidden activation by its Euclidean norm (both networks)."""
    td_error_scaling: bool = True
    """Divide the TD error by σ_δ (:class:`TDErrorScaler`); false: σ_δ = 1."""
    log_std_min: float = -20.0
    """Lower clamp of the policy's log standard deviation."""
    log_std_max: float = 2.0
    """Upper clamp of the policy's log standard deviation."""

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.actor_lr >= 0, f"actor_lr={self.actor_lr} must be >= 0 (the paper uses 0.0063)"),
            (self.critic_lr >= 0, f"critic_lr={self.critic_lr} must be >= 0 (the paper uses 0.0087)"),
            (0 <= self.beta1 < 1, f"beta1={self.beta1} must lie in [0, 1) (the paper uses 0)"),
            (0 <= self.beta2 < 1, f"beta2={self.beta2} must lie in [0, 1) (the paper uses 0.999)"),
            (self.adam_eps > 0, f"adam_eps={self.adam_eps} must be > 0"),
            (self.entropy_coef >= 0, f"entropy_coef={self.entropy_coef} must be >= 0 (the paper uses 0.07)"),
            (0 <= self.gamma <= 1, f"gamma={self.gamma} must lie in [0, 1] (the paper uses 0.99)"),
            (len(self.hidden_sizes) > 0 and all(isinstance(h, int) and h > 0 for h in self.hidden_sizes),
             f"hidden_sizes={self.hidden_sizes} must be a non-empty tuple of positive ints, e.g. (256, 256)"),
            (self.log_std_min < self.log_std_max,
             f"log_std_min={self.log_std_min} must be below log_std_max={self.log_std_max}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"AVG settings: {message}")

    @classmethod
    def from_config(cls, config: Config, **overrides: Any) -> AVGSettings:
        """The paper's settings with ``gamma`` from ``config`` and ``hidden_sizes`` from ``config``
        when they differ from Config's default; ``overrides`` set single fields."""
        values: dict[str, Any] = {"gamma": config.gamma}
        if list(config.hidden_sizes) != Config().hidden_sizes:
            values["hidden_sizes"] = tuple(config.hidden_sizes)
        values.update(overrides)
        if "hidden_sizes" in values:
            values["hidden_sizes"] = tuple(values["hidden_sizes"])
        return cls(**values)

    def to_plain(self) -> dict[str, Any]:
        """The settings as plain Python values (lists for tuples), e.g. for a state dict."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


class PenultimateNorm(nn.Module):
    """``h / max(‖h‖₂, 1e-12)`` over the last dimension: unit-norm features for the output layer."""

    def forward(self, hidden: Tensor) -> Tensor:
        return F.normalize(hidden, p=2.0, dim=-1, eps=_NORM_EPS)


def _trunk(in_features: int, hidden_sizes: tuple[int, ...], penultimate_normalization: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.LeakyReLU()]
        width = size
    if penultimate_normalization:
        layers.append(PenultimateNorm())
    return nn.Sequential(*layers)


@torch.no_grad()
def _orthogonal_init(module: nn.Module, generator: torch.Generator) -> None:
    """Orthogonal weights (gain 1) and zero biases for every Linear layer, from ``generator``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=1.0, generator=generator)
            nn.init.zeros_(layer.bias)


def squashed_log_prob(pre_tanh: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """``log π(tanh(u))`` of the tanh-squashed diagonal Gaussian, summed over the last dimension.

    ``log N(u; μ, σ) − log(1 − tanh²u)`` with ``log(1 − tanh²u) = 2(log 2 − u − softplus(−2u))``,
    which stays finite where ``tanh u`` rounds to ±1.
    """
    standardized = (pre_tanh - mean) * torch.exp(-log_std)
    gaussian = -0.5 * standardized.square() - log_std - _HALF_LOG_2PI
    log_det = 2.0 * (_LOG_2 - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - log_det).sum(dim=-1)


class SquashedGaussianPolicy(nn.Module):
    """``ã = tanh(u)``, ``u ~ N(μ(s), diag σ(s)²)``: mean and clamped log-std heads on one trunk."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: tuple[int, ...],
                 penultimate_normalization: bool = True, log_std_min: float = -20.0, log_std_max: float = 2.0):
        super().__init__()
        self.trunk = _trunk(obs_dim, hidden_sizes, penultimate_normalization)
        self.mean_head = nn.Linear(hidden_sizes[-1], action_dim)
        self.log_std_head = nn.Linear(hidden_sizes[-1], action_dim)
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation of ``u`` for a batch of observations."""
        hidden = self.trunk(obs)
        log_std = self.log_std_head(hidden).clamp(self.log_std_min, self.log_std_max)
        return self.mean_head(hidden), log_std

    def rsample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Reparameterized actions in ``[-1, 1]`` and their log-probabilities (differentiable)."""
        mean, log_std = self(obs)
        noise = torch.randn(mean.shape, generator=generator)
        pre_tanh = mean + torch.exp(log_std) * noise
        return torch.tanh(pre_tanh), squashed_log_prob(pre_tanh, mean, log_std)


class QNetwork(nn.Module):
    """``Q(s, a)`` of the concatenated observation and ``[-1, 1]``-scaled action."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: tuple[int, ...],
                 penultimate_normalization: bool = True):
        super().__init__()
        self.trunk = _trunk(obs_dim + action_dim, hidden_sizes, penultimate_normalization)
        self.head = nn.Linear(hidden_sizes[-1], 1)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        return self.head(self.trunk(torch.cat((obs, action), dim=-1)))[..., 0]


class _Moments:
    """Welford running mean and unbiased variance of a scalar stream, as Python floats."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.sum_sq_dev = 0.0

    def update(self, value: float) -> None:
        self.count += 1
        deviation = value - self.mean
        self.mean += deviation / self.count
        self.sum_sq_dev += deviation * (value - self.mean)

    @property
    def variance(self) -> float:
        return self.sum_sq_dev / (self.count - 1) if self.count > 1 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "sum_sq_dev": self.sum_sq_dev}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.sum_sq_dev = int(state["count"]), float(state["mean"]), float(state["sum_sq_dev"])


class TDErrorScaler:
    """``σ_δ = √(Var[R] + Var[γ_t]·E[G²])`` from running statistics (Schaul et al. 2021, as AVG
    uses it incrementally).

    :meth:`observe` takes one transition's reward, its discount ``γ_t`` (0 where the target does
    not bootstrap) and whether the episode ended, and returns the updated ``σ_δ``. ``G`` is each
    finished episode's discounted return from its first step. ``σ_δ = 1`` until two rewards
    were seen, and while ``σ_δ² = 0``.
    """

    def __init__(self) -> None:
        self.rewards = _Moments()
        self.discounts = _Moments()
        self.squared_returns = _Moments()
        self.episode_return = 0.0  # Σ_k γ_1⋯γ_k r_{k+1} over the current episode so far
        self.discount_product = 1.0  # γ_1⋯γ_t

    def observe(self, reward: float, discount: float, episode_end: bool) -> float:
        self.rewards.update(reward)
        self.discounts.update(discount)
        self.episode_return += self.discount_product * reward
        self.discount_product *= discount
        if episode_end:
            self.squared_returns.update(self.episode_return * self.episode_return)
            self.forget_episode()
        return self.sigma

    def forget_episode(self) -> None:
        """Drop the current episode's partial return (it will not enter ``E[G²]``)."""
        self.episode_return, self.discount_product = 0.0, 1.0

    @property
    def variance(self) -> float:
        """``Var[R] + Var[γ_t]·E[G²]`` (``E[G²]`` = 0 before the first episode ends)."""
        return self.rewards.variance + self.discounts.variance * self.squared_returns.mean

    @property
    def sigma(self) -> float:
        variance = self.variance
        if self.rewards.count < 2 or variance <= 0.0:
            return 1.0
        return math.sqrt(variance)

    def state_dict(self) -> dict[str, Any]:
        return {"rewards": self.rewards.state_dict(), "discounts": self.discounts.state_dict(),
                "squared_returns": self.squared_returns.state_dict(), "episode_return": self.episode_return,
                "discount_product": self.discount_product}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewards.load_state_dict(state["rewards"])
        self.discounts.load_state_dict(state["discounts"])
        self.squared_returns.load_state_dict(state["squared_returns"])
        self.episode_return = float(state["episode_return"])
        self.discount_product = float(state["discount_product"])


class AVG(StreamAgent):
    """Action Value Gradient: see the module docstring for the update and its settings.

    ``AVG(observation_space, action_space, config, settings=None)``; ``settings`` defaults to
    :meth:`AVGSettings.from_config` of ``config``. Needs 1-D Box observations and a 1-D Box
    action space with finite bounds.
    """

    algo = "avg"
    extra_metrics = ("td_error_scale", "entropy")

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config, settings: AVGSettings | None = None):
        if not (isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1):
            raise ConfigError(
                f"avg needs a continuous action space (a 1-D Box), but this environment's is {action_space}; "
                "use stream_ac, stream_q or stream_sarsa for discrete actions"
            )
        low, high = np.asarray(action_space.low, np.float64), np.asarray(action_space.high, np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (high > low).all()):
            raise ConfigError(
                f"avg squashes its actions into the action box, which must be bounded, but it is {action_space}; "
                "wrap the environment to give finite action bounds"
            )
        if not (isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1):
            raise ConfigError(
                f"avg's networks take 1-D observations, but this environment's space is {observation_space}; "
                "flatten the observations (gymnasium.wrappers.FlattenObservation)"
            )
        super().__init__(observation_space, action_space, config)
        self.settings = settings if settings is not None else AVGSettings.from_config(config)
        s = self.settings
        obs_dim, action_dim = int(observation_space.shape[0]), int(action_space.shape[0])
        self.action_center = ((high + low) / 2.0).astype(np.float32)
        self.action_half_range = ((high - low) / 2.0).astype(np.float32)
        self.action_low = low.astype(np.float32)
        self.action_high = high.astype(np.float32)

        self.actor = SquashedGaussianPolicy(obs_dim, action_dim, s.hidden_sizes, s.penultimate_normalization,
                                            s.log_std_min, s.log_std_max)
        self.critic = QNetwork(obs_dim, action_dim, s.hidden_sizes, s.penultimate_normalization)
        # Initial weights from the agent's own generator: same seed, same network, whatever the global RNG.
        _orthogonal_init(self.actor, self.torch_generator)
        _orthogonal_init(self.critic, self.torch_generator)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=s.actor_lr, betas=(s.beta1, s.beta2),
                                                eps=s.adam_eps)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=s.critic_lr,
                                                 betas=(s.beta1, s.beta2), eps=s.adam_eps)
        self._networks = {"actor": self.actor, "critic": self.critic}
        self._optimizers = {"actor": self.actor_optimizer, "critic": self.critic_optimizer}
        self._actor_parameters = tuple(self.actor.parameters())
        self.td_scaler = TDErrorScaler()

    # -- actions: [-1, 1] for the networks, the action box for the environment --------------
    def _to_env_action(self, unit_action: Tensor) -> np.ndarray:
        action = self.action_center + self.action_half_range * unit_action.numpy()
        return np.clip(action, self.action_low, self.action_high)  # the affine image may round past a bound

    def _to_unit_action(self, action: np.ndarray) -> Tensor:
        unit = (action - self.action_center) / self.action_half_range
        return torch.from_numpy(np.clip(unit, -1.0, 1.0, dtype=np.float32))

    @torch.no_grad()
    def _act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        mean, log_std = self.actor(torch.from_numpy(obs)[None])
        if deterministic:
            return self._to_env_action(torch.tanh(mean[0]))
        noise = torch.randn(mean.shape, generator=self.torch_generator)
        return self._to_env_action(torch.tanh(mean + torch.exp(log_std) * noise)[0])

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        s = self.settings
        mask = td_target_mask(terminated, truncated, self.config)
        observations = torch.from_numpy(np.stack((obs, next_obs)))
        # One actor pass over (s, s'): row 0 is ã for the actor objective, row 1 is a' for the target.
        sampled, log_probs = self.actor.rsample(observations, self.torch_generator)
        next_action, next_log_prob = sampled[1].detach(), log_probs[1].detach()
        q_values = self.critic(observations, torch.stack((self._to_unit_action(action), next_action)))
        with torch.no_grad():
            target = reward + s.gamma * mask * (q_values[1] - s.entropy_coef * next_log_prob)
            td_error = target - q_values[0]
        self._check_finite(td_error)
        sigma = (self.td_scaler.observe(float(reward), s.gamma * mask, bool(terminated or truncated))
                 if s.td_error_scaling else 1.0)

        critic_loss = 0.5 * ((target - q_values[0]) / sigma).square()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        # Actor: ∇_θ[α log π(ã|s) − Q(s, ã)] through the reparameterized ã, with the updated critic.
        # autograd.grad leaves the critic's gradients as the critic step computed them.
        actor_loss = s.entropy_coef * log_probs[0] - self.critic(observations[:1], sampled[:1])[0]
        gradients = torch.autograd.grad(actor_loss, self._actor_parameters)
        for parameter, gradient in zip(self._actor_parameters, gradients):
            parameter.grad = gradient
        self.actor_optimizer.step()

        self.num_updates += 1
        return {"td_error": float(td_error), "effective_step_size": s.critic_lr, "trace_norm": 0.0,
                "td_error_scale": sigma, "entropy": -float(log_probs[0].detach())}

    def end_episode(self) -> None:
        """An abandoned episode: its partial return does not enter the TD-error scale."""
        self.td_scaler.forget_episode()

    def _extra_state(self) -> dict[str, Any]:
        return {"td_scaler": self.td_scaler.state_dict(), "settings": self.settings.to_plain()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Refuse a state of other settings before anything is loaded.
        saved = state.get("extra", {}).get("settings") if state.get("algo") == self.algo else None
        current = self.settings.to_plain()
        if saved is not None and saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise ConfigError(
                f"this avg state was made with other settings ({', '.join(changed)}); "
                "build the agent with the same AVGSettings to load it"
            )
        super().load_state_dict(state)

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.td_scaler.load_state_dict(state["td_scaler"])

"""AVG — Action Value Gradient (Vasan, Elsayed et al., "Deep Policy Gradient Methods Without Batch
Updates, Target Networks, or Replay Buffers", NeurIPS 2024, arXiv 2411.15370).

An incremental actor-critic for continuous actions: one update per transition, batch size 1, no
replay buffer, no target network, no eligibility trace. The actor is trained with the
reparameterization (action-value) gradient through a learned action-value critic ``Q(s, a)``, with
a fixed entropy bonus, as in SAC but with a single Q network and nothing stored.

Sources. The paper's text was not available when this was written; the procedure below follows
the authors' public code (github.com/gauthamvasan/avg: ``avg.py`` and
``incremental_rl/td_error_scaler.py``), cited as **(the authors' code)**. Where streamx departs
from that code, or decides something the code does not, the choice is marked **(chosen here)**
with the reason.

The update, for the transition ``(s, a, r, s')``
    0. The actor's sample at ``s``, ``ã = tanh(u)``, ``u = μ_θ(s) + σ_θ(s) ⊙ ε``, is the action
       that was executed **(the authors' code)**: :meth:`AVG.act` remembers the ``ε ~ N(0, I)``
       it drew, with the observation and the action it returned. When ``update`` gets exactly
       that observation and action (array equality) and no update or ``load_state_dict`` came
       in between (same weights), ``u`` is recomputed from the remembered ``ε`` with gradient —
       the same action, now differentiable in ``θ``. Otherwise (a transition the agent did not
       just sample: external data, a deterministic ``act``, a repeated update of one transition)
       ``ε`` is drawn fresh, as in SAC's actor update **(the fallback: chosen here; the authors'
       loop always updates on the action it just sampled)**.
    1. Sample a fresh next action ``a' ~ π_θ(·|s')`` and form the entropy-augmented target
       ``y = r + γ·m·(Q_φ(s', a') − α log π_θ(a'|s'))`` (``m`` = 0 when ``s'`` is terminal; see
       *Episode ends*). ``y`` is a constant (semi-gradient; no target network).
    2. TD error ``δ = y − Q_φ(s, a)``, scaled ``δ̃ = δ / σ_δ`` (*TD-error scaling*), after the
       scaling statistics took in this transition's entropy-augmented reward
       ``r − α log π_θ(ã|s)``.
    3. Critic loss ``L_Q(φ) = δ̃²`` (no ½), i.e. the gradient ``−2 δ̃ ∇_φ Q_φ(s, a) / σ_δ``
       **(the authors' code)**; the critic sees the taken action ``a``, not a function of ``θ``.
    4. Actor loss ``L_π(θ) = α log π_θ(ã|s) − Q_φ(s, ã)``, differentiated through ``ã``.
    5. Both gradients are taken at the pre-update parameters — the actor's through the critic
       as it was before this update — and then the actor and the critic each take one Adam step
       **(the authors' code: both losses are formed, then the actor steps, then the critic; the
       critic's loss does not depend on ``θ``, so the two steps are simultaneous)**.

Policy: squashed (tanh) Gaussian
    ``u ~ N(μ_θ(s), diag σ_θ(s)²)``, ``ã = tanh(u)`` in ``[-1, 1]^d``, with
    ``log π(ã|s) = Σ_i [log N(u_i; μ_i, σ_i) − log(1 − tanh²(u_i))]``, the correction written as
    ``2(log 2 − u − softplus(−2u))`` (both as in the authors' code). ``σ_θ = exp(clamp(W h, −20, 2))``:
    the head is a log standard deviation, clamped to ``[−20, 2]`` as in the authors' code
    **(chosen here: the authors' code passes ``exp(head)`` to ``MultivariateNormal`` as the
    covariance, so their head is in effect a log-variance and their standard deviation is
    ``exp(head / 2)``; streamx keeps the policy the paper describes, a Gaussian with standard
    deviation σ_θ)**. The environment gets the affine image of ``ã`` on the action box,
    ``low + (ã + 1)(high − low)/2`` — the identity on the ``[-1, 1]`` boxes of the MuJoCo tasks
    **(the rescaling to other boxes: chosen here; the authors' loop clips actions to the box)**;
    ``log π`` is that of ``ã`` on ``[-1, 1]``, and the critic sees the taken action mapped back to
    ``[-1, 1]``. ``deterministic`` acting gives ``tanh(μ_θ(s))``.

Networks (the authors' code)
    Actor and critic are separate MLPs, 2 hidden layers of 256 units, Leaky ReLU (slope 0.01,
    torch's default), orthogonal initialization with gain 1 and zero biases (streamx draws it
    from the agent's own seeded generator). Actor: ``s → 256 → 256 → pnorm →`` mean head and
    log-std head. Critic: ``[s, a] → 256 → 256 → pnorm → Q``. No LayerNorm, no sparse
    initialization (those are stream-x stabilizers, not AVG's).

Penultimate normalization
    The last hidden activation ``h`` is divided by its Euclidean norm before the output
    layer(s), in both networks (``AVGSettings.penultimate_normalization``). The authors' code
    divides by ``‖h‖₂`` itself; streamx uses ``h / max(‖h‖₂, 1e-12)`` **(chosen here: the floor
    only matters for an all-zero ``h``, where the authors' division gives NaN)**.

Observation normalization
    Welford running mean and variance of the observations, ``(o − μ)/√(σ² + ε)``. In streamx
    this is the environment wrapper :class:`streamx.wrappers.NormalizeObservation`, applied by
    :func:`streamx.envs.make_env` when ``config.obs_normalization`` is true (AVG's config default);
    AVG does **not** normalize again. The authors' loop uses gymnasium's ``NormalizeObservation``,
    which differs in small details (a prior count, float32 statistics).

TD-error scaling (Schaul et al. 2021, as the authors' code applies it; :class:`TDErrorScaler`)
    Before ``σ_δ`` is read, the running statistics take in the current transition:

    * the entropy-augmented reward ``r_ent = r − α log π_θ(ã|s)`` of the executed action, its
      log-probability from the sample of step 0 (in the fallback case, from the fresh sample);
    * the discount ``γ_t = γ·m`` (0 where the target does not bootstrap);
    * at an episode end, ``G²``, with ``G`` the undiscounted sum of ``r_ent`` over the episode;
      ``G`` then starts again from 0.

    The statistics are Welford means and **population** variances (divided by ``n``), and
    ``σ_δ² = max(Var[r_ent] + Var[γ_t]·E[G²], 1e-4)``; ``σ_δ = 1`` while ``σ_δ² ≤ 0.01`` and no
    ``G`` has been added yet, else ``σ_δ = √σ_δ²`` (all the authors' code). The authors add ``G``
    at termination only and carry a truncated episode's sum into the next episode; streamx adds
    ``G`` at every episode end, termination or truncation, and resets it **(chosen here: ``G`` stands
    for an episode's return; carried across a time-limit reset it would add up the rewards of
    several episodes)**. :meth:`AVG.end_episode` (an episode
    abandoned, e.g. on resuming at a new episode) drops the partial ``G`` without adding it.
    This replaces stream-x's reward scaling: run AVG with ``reward_scaling=false`` (its config
    default; the :class:`~streamx.wrappers.ScaleReward` wrapper would scale the rewards a
    second time).

Optimizer and hyperparameters (:class:`AVGSettings`)
    Adam for each network, ``β₁ = 0`` (no momentum), ``β₂ = 0.999``, ``ε = 1e-8`` (torch's
    default); actor step size 0.0063, critic step size 0.0087; entropy coefficient ``α = 0.07``,
    fixed (not learned, unlike SAC); ``γ = 0.99``. These are the authors' code's defaults, also
    their values for Ant, HalfCheetah and Humanoid; their values for other tasks (Hopper,
    Walker2d, reacher_hard) are in docs/avg.md.

Episode ends
    Termination never bootstraps; truncation bootstraps when ``config.bootstrap_on_truncation``
    (AVG's config default, as in the authors' loop, whose target ignores truncation) and is
    treated as termination otherwise, as for every streamx agent
    (:func:`~streamx.agents.base.td_target_mask`). ``m`` above is that mask. AVG's config default
    has no time feature (the authors' loop has none).

The remembered sample
    ``ε``, the observation and the action of the last stochastic ``act`` are per-step state: they
    are in the state dict (plain tensors), so a checkpoint taken between ``act`` and ``update``
    continues identically; ``update`` and ``end_episode`` clear them, ``load_state_dict`` replaces
    them with the saved ones. A deterministic ``act`` leaves them as they are.

Metrics returned by ``update``
    ``td_error``: the unscaled ``δ`` (in reward units, comparable across algorithms);
    ``effective_step_size``: the critic's Adam step size (constant; AVG bounds no step);
    ``trace_norm``: 0.0 (AVG keeps no eligibility trace); ``td_error_scale``: ``σ_δ``;
    ``entropy``: ``−log π(ã|s)``, the one-sample entropy estimate of the squashed policy at ``s``
    (from the executed sample when it is remembered).

Settings from :class:`~streamx.config.Config`
    :meth:`AVGSettings.from_config`: ``actor_lr``, ``critic_lr``, ``entropy_coef``, ``beta1``,
    ``beta2``, ``penultimate_normalization``, ``td_error_scaling`` ← ``config.avg_*``;
    ``gamma`` ← ``config.gamma``; ``hidden_sizes`` ← ``config.hidden_sizes`` (AVG's config default
    256, 256). ``seed`` seeds the agent's own generators (initial weights and every sampled
    action, :class:`~streamx.agents.base.StreamAgent`); ``bootstrap_on_truncation`` as above.
    Config's stream-x fields (``lr``, ``lamda``, ``kappa_*``, ``entropy_coef``, ``optimizer``,
    ``sparse_init``, ``layer_norm``, …) are not read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamx.agents.base import StreamAgent, check_fits_in_memory, saved_tensor_problem, td_target_mask
from streamx.config import AVG_FIELDS, Config
from streamx.errors import ConfigError
from streamx.validation import describe

__all__ = ["AVG", "AVGSettings", "PenultimateNorm", "QNetwork", "SquashedGaussianPolicy", "TDErrorScaler",
           "squashed_log_prob"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_NORM_EPS = 1e-12


@dataclass(frozen=True)
class AVGSettings:
    """AVG's hyperparameters; the defaults are the authors' code's (also their values for Ant,
    HalfCheetah and Humanoid; docs/avg.md lists their values for other tasks)."""

    actor_lr: float = 0.0063
    """Adam step size of the actor."""
    critic_lr: float = 0.0087
    """Adam step size of the critic."""
    beta1: float = 0.0
    """Adam's first-moment decay β₁ (0: no momentum, the authors' value)."""
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
    """Lower clamp of the policy's log standard deviation (the authors' code's bound)."""
    log_std_max: float = 2.0
    """Upper clamp of the policy's log standard deviation (the authors' code's bound)."""

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.actor_lr >= 0, f"actor_lr={self.actor_lr} must be >= 0 (the authors use 0.0063)"),
            (self.critic_lr >= 0, f"critic_lr={self.critic_lr} must be >= 0 (the authors use 0.0087)"),
            (0 <= self.beta1 < 1, f"beta1={self.beta1} must lie in [0, 1) (the authors use 0)"),
            (0 <= self.beta2 < 1, f"beta2={self.beta2} must lie in [0, 1) (the authors use 0.999)"),
            (self.adam_eps > 0, f"adam_eps={self.adam_eps} must be > 0"),
            (self.entropy_coef >= 0, f"entropy_coef={self.entropy_coef} must be >= 0 (the authors use 0.07)"),
            (0 <= self.gamma <= 1, f"gamma={self.gamma} must lie in [0, 1] (the authors use 0.99)"),
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
        """The settings of ``config``: its ``avg_*`` fields, ``gamma`` and ``hidden_sizes``
        (AVG's config defaults give 256, 256); ``overrides`` set single fields."""
        values: dict[str, Any] = {
            "actor_lr": config.avg_actor_lr, "critic_lr": config.avg_critic_lr,
            "entropy_coef": config.avg_entropy_coef, "beta1": config.avg_beta1, "beta2": config.avg_beta2,
            "penultimate_normalization": config.avg_penultimate_norm,
            "td_error_scaling": config.avg_td_error_scaling,
            "gamma": config.gamma, "hidden_sizes": tuple(config.hidden_sizes)}
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

    def sample_with(self, obs: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """``tanh(μ(s) + σ(s) ⊙ noise)`` in ``[-1, 1]`` and its log-probability: the
        reparameterized action of a given standard normal draw (differentiable in the weights)."""
        mean, log_std = self(obs)
        pre_tanh = mean + torch.exp(log_std) * noise
        return torch.tanh(pre_tanh), squashed_log_prob(pre_tanh, mean, log_std)

    def rsample(self, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Reparameterized actions in ``[-1, 1]`` and their log-probabilities (differentiable)."""
        noise = torch.randn((obs.shape[0], self.mean_head.out_features), generator=generator)
        return self.sample_with(obs, noise)


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
    """Welford running mean and population variance (divided by ``n``) of a scalar stream, as
    Python floats; both are 0 before the first value."""

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
        return self.sum_sq_dev / self.count if self.count > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "sum_sq_dev": self.sum_sq_dev}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.sum_sq_dev = int(state["count"]), float(state["mean"]), float(state["sum_sq_dev"])


class TDErrorScaler:
    """``σ_δ`` from running statistics (Schaul et al. 2021, as the authors' code applies it).

    :meth:`observe` takes one transition's entropy-augmented reward ``r_ent``, its discount
    ``γ_t`` (0 where the target does not bootstrap) and whether the episode ended, and returns
    the updated ``σ_δ``. ``G`` is the undiscounted sum of ``r_ent`` over the current episode; at
    an episode end ``G²`` enters ``E[G²]`` and ``G`` starts again from 0.
    ``σ_δ² = max(Var[r_ent] + Var[γ_t]·E[G²], 1e-4)`` with population variances; ``σ_δ = 1``
    while ``σ_δ² ≤ 0.01`` and no ``G`` was added, else ``√σ_δ²``.
    """

    VARIANCE_FLOOR = 1e-4
    """Lower bound of ``σ_δ²``."""
    UNSCALED_BELOW = 0.01
    """``σ_δ = 1`` while ``σ_δ²`` is at most this and no episode's ``G`` was added."""

    def __init__(self) -> None:
        self.rewards = _Moments()
        self.discounts = _Moments()
        self.squared_returns = _Moments()
        self.episode_return = 0.0  # G: Σ r_ent over the current episode so far, undiscounted

    def observe(self, reward: float, discount: float, episode_end: bool) -> float:
        self.rewards.update(reward)
        self.discounts.update(discount)
        self.episode_return += reward
        if episode_end:
            self.squared_returns.update(self.episode_return * self.episode_return)
            self.forget_episode()
        return self.sigma

    def forget_episode(self) -> None:
        """Drop the current episode's partial ``G`` (it will not enter ``E[G²]``)."""
        self.episode_return = 0.0

    @property
    def variance(self) -> float:
        """``max(Var[r_ent] + Var[γ_t]·E[G²], 1e-4)`` (``E[G²]`` = 0 before the first episode end)."""
        return max(self.rewards.variance + self.discounts.variance * self.squared_returns.mean,
                   self.VARIANCE_FLOOR)

    @property
    def sigma(self) -> float:
        variance = self.variance
        if variance <= self.UNSCALED_BELOW and self.squared_returns.count == 0:
            return 1.0
        return math.sqrt(variance)

    def state_dict(self) -> dict[str, Any]:
        return {"rewards": self.rewards.state_dict(), "discounts": self.discounts.state_dict(),
                "squared_returns": self.squared_returns.state_dict(), "episode_return": self.episode_return}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewards.load_state_dict(state["rewards"])
        self.discounts.load_state_dict(state["discounts"])
        self.squared_returns.load_state_dict(state["squared_returns"])
        self.episode_return = float(state["episode_return"])


@dataclass(frozen=True, eq=False)
class _ExecutedSample:
    """The last stochastic action: its observation, the action returned and the ``ε`` drawn."""

    obs: np.ndarray
    action: np.ndarray
    noise: Tensor


class AVG(StreamAgent):
    """Action Value Gradient: see the module docstring for the update and its settings.

    ``AVG(observation_space, action_space, config, settings=None)``; ``settings`` defaults to
    :meth:`AVGSettings.from_config` of ``config``. Needs 1-D Box observations and a 1-D Box
    action space with finite bounds.
    """

    algo = "avg"
    extra_metrics = ("td_error_scale", "entropy")
    acting_network = "actor"
    action_spaces = ("box",)
    config_fields = ("gamma", "hidden_sizes", "bootstrap_on_truncation", *AVG_FIELDS)
    # AVG's own procedure: 2 × 256 networks, observation normalization, TD-error scaling in place of
    # reward scaling, no time feature, and bootstrapping at time-limit truncation
    config_defaults = {"hidden_sizes": [256, 256], "obs_normalization": True, "reward_scaling": False,
                       "time_feature": False, "bootstrap_on_truncation": True}
    policy_description = "tanh of the mean action, on the action box"

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config, settings: AVGSettings | None = None):
        super().__init__(observation_space, action_space, config)  # refuses action spaces other than a 1-D Box
        assert isinstance(action_space, gym.spaces.Box)
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
        self.settings = settings if settings is not None else AVGSettings.from_config(config)
        s = self.settings
        obs_dim, action_dim = int(observation_space.shape[0]), int(action_space.shape[0])
        self.action_center = ((high + low) / 2.0).astype(np.float32)
        self.action_half_range = ((high - low) / 2.0).astype(np.float32)
        self.action_low = low.astype(np.float32)
        self.action_high = high.astype(np.float32)

        def networks() -> tuple[SquashedGaussianPolicy, QNetwork]:
            return (SquashedGaussianPolicy(obs_dim, action_dim, s.hidden_sizes, s.penultimate_normalization,
                                           s.log_std_min, s.log_std_max),
                    QNetwork(obs_dim, action_dim, s.hidden_sizes, s.penultimate_normalization))

        check_fits_in_memory(lambda: nn.ModuleList(networks()),
                             f"avg's actor and critic for observations of shape {observation_space.shape} with "
                             f"hidden_sizes={list(s.hidden_sizes)}", "use smaller hidden_sizes (AVG's are 256,256)")
        self.actor, self.critic = networks()
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
        self._critic_parameters = tuple(self.critic.parameters())
        self.td_scaler = TDErrorScaler()
        self._executed: _ExecutedSample | None = None

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
        action = self._to_env_action(torch.tanh(mean + torch.exp(log_std) * noise)[0])
        # The executed sample, for the actor objective of the update of this very transition.
        self._executed = _ExecutedSample(obs.copy(), action.copy(), noise)
        return action

    def _executed_noise(self, obs: np.ndarray, action: np.ndarray) -> Tensor | None:
        """The ε that produced ``action`` at ``obs``, if that is the remembered sample (else None)."""
        executed = self._executed
        if executed is None or not (np.array_equal(obs, executed.obs) and np.array_equal(action, executed.action)):
            return None
        return executed.noise

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        s = self.settings
        mask = td_target_mask(terminated, truncated, self.config)
        observation, next_observation = torch.from_numpy(obs)[None], torch.from_numpy(next_obs)[None]
        action_dim = self.actor.mean_head.out_features
        # ã at s: the executed sample recomputed from its ε (same weights: the same action, now with
        # gradient), or, for a transition the agent did not just sample, a fresh one.
        noise = self._executed_noise(obs, action)
        if noise is None:
            noise = torch.randn((1, action_dim), generator=self.torch_generator)
        sampled, log_prob = self.actor.sample_with(observation, noise)
        with torch.no_grad():
            next_noise = torch.randn((1, action_dim), generator=self.torch_generator)
            next_action, next_log_prob = self.actor.sample_with(next_observation, next_noise)
        q_values = self.critic(torch.cat((observation, next_observation)),
                               torch.cat((self._to_unit_action(action)[None], next_action)))
        with torch.no_grad():
            target = reward + s.gamma * mask * (q_values[1] - s.entropy_coef * next_log_prob[0])
            td_error = target - q_values[0]
        self._check_finite(td_error)
        entropy_reward = reward - s.entropy_coef * float(log_prob.detach())
        sigma = (self.td_scaler.observe(entropy_reward, s.gamma * mask, bool(terminated or truncated))
                 if s.td_error_scaling else 1.0)

        # Both gradients at the pre-update parameters (the actor's through the critic as it is now),
        # then one Adam step each.
        actor_loss = s.entropy_coef * log_prob[0] - self.critic(observation, sampled)[0]
        actor_gradients = torch.autograd.grad(actor_loss, self._actor_parameters)
        critic_loss = ((target - q_values[0]) / sigma).square()
        critic_gradients = torch.autograd.grad(critic_loss, self._critic_parameters)
        for parameters, gradients in ((self._actor_parameters, actor_gradients),
                                      (self._critic_parameters, critic_gradients)):
            for parameter, gradient in zip(parameters, gradients):
                parameter.grad = gradient
        self.actor_optimizer.step()
        self.critic_optimizer.step()

        self._executed = None  # the weights changed: the remembered sample is no longer this policy's
        self.num_updates += 1
        return {"td_error": float(td_error), "effective_step_size": s.critic_lr, "trace_norm": 0.0,
                "td_error_scale": sigma, "entropy": -float(log_prob.detach())}

    def end_episode(self) -> None:
        """An abandoned episode: its partial return does not enter the TD-error scale, and the
        remembered sample (of that episode's last act) is dropped."""
        self.td_scaler.forget_episode()
        self._executed = None

    def _extra_state(self) -> dict[str, Any]:
        executed = self._executed
        return {"td_scaler": self.td_scaler.state_dict(), "settings": self.settings.to_plain(),
                "executed": None if executed is None else {
                    "obs": torch.tensor(executed.obs), "action": torch.tensor(executed.action),
                    "noise": executed.noise.clone()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Refuse a state of other settings before anything is loaded.
        extra = state.get("extra") if isinstance(state, Mapping) and state.get("algo") == self.algo else None
        saved = extra.get("settings") if isinstance(extra, Mapping) else None
        current = self.settings.to_plain()
        if saved is not None and saved != current:
            changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
            raise ConfigError(
                f"this avg state was made with other settings ({', '.join(changed)}); "
                "build the agent with the same AVGSettings to load it"
            )
        super().load_state_dict(state)

    def _extra_state_problem(self, extra: Mapping[str, Any]) -> str | None:
        try:
            trial = TDErrorScaler()
            trial.load_state_dict(extra["td_scaler"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            return f"its TD-error statistics cannot be read ({type(exc).__name__}: {exc})"
        moments = (trial.rewards, trial.discounts, trial.squared_returns)
        if not all(m.count >= 0 and math.isfinite(m.mean) and math.isfinite(m.sum_sq_dev) and m.sum_sq_dev >= 0
                   for m in moments) or not math.isfinite(trial.episode_return):
            return "its TD-error statistics are not finite, non-negative counts and variances"
        executed = extra.get("executed")
        if executed is None:
            return None
        if not isinstance(executed, Mapping):
            return f"its last action is {describe(executed)}, not a dict"
        shapes = {"obs": tuple(self.observation_space.shape or ()), "action": self.action_center.shape,
                  "noise": (1, *self.action_center.shape)}  # a batch of one, as drawn in act()
        for key, shape in shapes.items():
            problem = saved_tensor_problem(executed.get(key), shape, f"last action's {key}")
            if problem is not None:
                return problem
        return None

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.td_scaler.load_state_dict(state["td_scaler"])
        executed = state.get("executed")
        self._executed = None if executed is None else _ExecutedSample(
            executed["obs"].numpy().astype(np.float32), executed["action"].numpy().astype(np.float32),
            executed["noise"].to(torch.float32).clone())

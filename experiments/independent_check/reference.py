"""An independent reference implementation of the stream-x algorithms, used to check streamx.

Written from PAPER.md's math only (the project's specification: §1 the shared techniques, §2 the
algorithms, §3 the networks, §4 and §9 the preprocessing and the Atari loop), in plain numpy,
PyTorch autograd, gymnasium and ale-py. It shares no code with streamx beyond reading
streamx's weights and recorded transitions: ``check.py`` hands it streamx's weights (for the
re-synchronised Atari check also its traces), the hyperparameters in effect and the transitions
streamx's own training loop produced, nothing else. It was never derived from the authors' code
(mohmdelsayed/streaming-drl).

What it covers: Welford observation normalization (§1.5), reward scaling (§1.6), the time
feature (§1.7), the MuJoCo / DM Control wrapper chain and the Atari preprocessing from the raw
ale-py emulator (§4, §9), the parameter-free LayerNorm + LeakyReLU MLP and Atari conv net
(§1.4, §3), ObGD (§1.1), Stream AC(λ) with a diagonal Gaussian policy and Stream Q(λ) with
Watkins trace cuts (§2). Sparse initialization (§1.3) is not needed: the reference starts from
a copy of streamx's weights.

Where PAPER.md leaves a detail open, the reference takes the usual convention:

* LayerNorm divides by ``sqrt(biased variance + 1e-5)`` (the spec names no epsilon);
* ObGD is written ``w ← w + α̂ δ z`` with ``z`` the trace of ``∇f`` (§1.1's first form), and
  ``Σ‖z‖₁`` is summed in float64;
* Atari: the no-op count ``k ~ U{1..30}`` is drawn from the raw env's ``np_random`` (so a seeded
  reset is reproducible); the start sequence of a game with FIRE is FIRE then action 2; when a
  game ends inside a 4-frame skip, the max-pool takes the last two frames actually played; the
  frame is resized to 84×84 with OpenCV's area interpolation, then made grayscale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

NORMALIZER_EPS = 1e-8  # §1.5 / §1.6: (x − μ) / √(σ² + 1e-8)
LAYER_NORM_EPS = 1e-5
LEAKY_SLOPE = 0.01  # §1.4
ATARI_STRIDES = (5, 3, 2)  # §3: Conv 32 8×8 s5 → Conv 64 4×4 s3 → Conv 64 3×3 s2 → FC 256
ATARI_NOOP_MAX = 30
ATARI_SKIP = 4
ATARI_SIZE = 84
ATARI_STACK = 4

Layer = tuple[Tensor, Tensor]
"""A weight and its bias."""


# -- §1.5, §1.6, §1.7: normalization, reward scaling, time feature -------------------------------
class Welford:
    """Running mean and UNBIASED variance of a stream of arrays (§1.5), in float64.

    The first sample sets the mean; the variance is 1 until two samples were seen.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.count = 0
        self.mean = np.zeros(shape, dtype=np.float64)
        self.sum_squares = np.zeros(shape, dtype=np.float64)

    def push(self, x: Any) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.count += 1
        if self.count == 1:
            self.mean = x.copy()
            return
        delta = x - self.mean
        self.mean = self.mean + delta / self.count
        self.sum_squares = self.sum_squares + delta * (x - self.mean)

    @property
    def variance(self) -> np.ndarray:
        if self.count < 2:
            return np.ones_like(self.mean)
        return self.sum_squares / (self.count - 1)

    def push_and_normalize(self, x: Any) -> np.ndarray:
        """Update the statistics with ``x``, then normalize ``x`` with them."""
        self.push(x)
        return (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.variance + NORMALIZER_EPS)


class RewardScaler:
    """§1.6: ``u ← γ(1 − done)u + r``, Welford statistics of ``u``, reward ``r / √(Var[u] + 1e-8)``."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma
        self.trace = 0.0
        self.stats = Welford()

    def scale(self, reward: float, done: bool) -> float:
        self.trace = self.gamma * (1.0 - float(done)) * self.trace + reward
        self.stats.push(self.trace)
        return reward / math.sqrt(float(self.stats.variance) + NORMALIZER_EPS)


@dataclass
class Step:
    """One preprocessed environment step; ``episode`` is (raw return, length) when one ended."""

    obs: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    episode: tuple[float, int] | None
    lost_life: bool = False


class VectorPreprocessing:
    """§4 for MuJoCo / DM Control on a raw gymnasium env (with its time limit): flatten →
    record episode statistics → clip the action → reward scaling → observation
    normalization → time feature ``t/T − 0.5``."""

    def __init__(self, env: gym.Env, gamma: float) -> None:
        if env.spec is None or not env.spec.max_episode_steps:
            raise ValueError("the time feature needs an env with a time limit")
        self.env = env
        self.time_limit = int(env.spec.max_episode_steps)
        self.obs_stats = Welford((gym.spaces.flatdim(env.observation_space),))
        self.rewards = RewardScaler(gamma)
        self.t = 0
        self.episode_return = 0.0

    def _observation(self, raw: Any) -> np.ndarray:
        flat = gym.spaces.flatten(self.env.observation_space, raw)
        normalized = self.obs_stats.push_and_normalize(flat)
        return np.append(normalized, self.t / self.time_limit - 0.5).astype(np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        raw, _ = self.env.reset(seed=seed)
        self.t, self.episode_return = 0, 0.0
        return self._observation(raw)

    def step(self, action: np.ndarray) -> Step:
        space = self.env.action_space
        assert isinstance(space, gym.spaces.Box)
        raw, reward, terminated, truncated, _ = self.env.step(np.clip(action, space.low, space.high))
        self.t += 1
        self.episode_return += float(reward)
        scaled = self.rewards.scale(float(reward), terminated or truncated)
        episode = (self.episode_return, self.t) if terminated or truncated else None
        return Step(self._observation(raw), scaled, bool(terminated), bool(truncated), episode)


class AtariPreprocessing:
    """§4 and §9 for Atari, from the raw ale-py emulator with ``<Game>NoFrameskip-v4`` semantics
    (one frame per step, no sticky actions, minimal action set): record whole-game statistics →
    no-op reset → repeat each action 4 frames, max of the last two → episodic life (a lost life
    is ``terminated``, the game goes on) → FIRE on reset → resize 84×84 → grayscale → per-pixel
    observation normalization → stack 4 → reward scaling (``done`` = terminated or truncated).

    :meth:`reset` is a real reset: call it only when a game is over (§9), i.e. when
    :meth:`step` returned an ``episode``.
    """

    def __init__(self, game: str, gamma: float) -> None:
        import ale_py

        gym.register_envs(ale_py)
        self.env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False)
        emulator: Any = self.env.unwrapped  # ale_py's AtariEnv
        self.ale = emulator.ale
        meanings = emulator.get_action_meanings()
        self.start_actions = [meanings.index("FIRE"), 2] if "FIRE" in meanings else []
        self.pixel_stats = Welford((ATARI_SIZE, ATARI_SIZE))
        self.rewards = RewardScaler(gamma)
        self.frames: list[np.ndarray] = []
        self.lives = 0
        self.game_return = 0.0
        self.game_frames = 0

    def _frame(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        screen, reward, terminated, truncated, _ = self.env.step(action)
        self.game_return += float(reward)
        self.game_frames += 1
        return screen, float(reward), bool(terminated), bool(truncated)

    def _skip(self, action: int) -> tuple[np.ndarray, float, bool, bool, bool]:
        """Four frames of one action (fewer when the game ends), max-pooled, and whether a life
        was lost; ``terminated`` here is the emulator's game over."""
        screens, total, terminated, truncated = [], 0.0, False, False
        for _ in range(ATARI_SKIP):
            screen, reward, terminated, truncated = self._frame(action)
            screens.append(screen)
            total += reward
            if terminated or truncated:
                break
        pooled = screens[-1] if len(screens) == 1 else np.maximum(screens[-2], screens[-1])
        lives = self.ale.lives()
        lost_life = 0 < lives < self.lives
        self.lives = lives
        return pooled, total, terminated, truncated, lost_life

    def _observation(self, screen: np.ndarray) -> np.ndarray:
        small = cv2.resize(screen, (ATARI_SIZE, ATARI_SIZE), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        return self.pixel_stats.push_and_normalize(gray).astype(np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        screen, _ = self.env.reset(seed=seed)
        self.game_return, self.game_frames = 0.0, 0
        for _ in range(int(self.env.unwrapped.np_random.integers(1, ATARI_NOOP_MAX + 1))):
            screen, _, terminated, truncated = self._frame(0)
            if terminated or truncated:
                raise RuntimeError("the game ended during the no-op reset")
        self.lives = self.ale.lives()
        for action in self.start_actions:
            screen, _, terminated, truncated, _ = self._skip(action)
            if terminated or truncated:
                raise RuntimeError("the game ended during the FIRE reset")
        self.frames = [self._observation(screen)] * ATARI_STACK
        return np.stack(self.frames)

    def step(self, action: int) -> Step:
        screen, reward, game_over, truncated, lost_life = self._skip(action)
        terminated = game_over or lost_life  # episodic life: a lost life is terminal for the learner
        self.frames = [*self.frames[1:], self._observation(screen)]
        scaled = self.rewards.scale(reward, terminated or truncated)
        episode = (self.game_return, self.game_frames) if game_over or truncated else None
        return Step(np.stack(self.frames), scaled, terminated, truncated, episode, lost_life)


# -- §1.4, §3: the networks -------------------------------------------------------------------------
def layer_norm(x: Tensor) -> Tensor:
    """Normalize one sample over ALL its elements, no gain or bias (§1.4)."""
    mean = x.mean()
    variance = ((x - mean) ** 2).mean()
    return (x - mean) / torch.sqrt(variance + LAYER_NORM_EPS)


def mlp_features(layers: Sequence[Layer], x: Tensor) -> Tensor:
    """The hidden layers of an MLP: ``LeakyReLU(LayerNorm(W h + b))`` per layer."""
    h = x
    for weight, bias in layers:
        h = F.leaky_relu(layer_norm(weight @ h + bias), LEAKY_SLOPE)
    return h


def atari_q_values(layers: Sequence[Layer], obs: Tensor) -> tuple[Tensor, Tensor]:
    """Q(s, ·) of the Atari net (§3) for one 4×84×84 observation, and all the normalized
    pre-activations that went into a LeakyReLU (how close each unit is to the kink)."""
    *convs, fc, head = layers
    h = obs
    normalized = []
    for (weight, bias), stride in zip(convs, ATARI_STRIDES, strict=True):
        z = layer_norm(F.conv2d(h[None], weight, bias, stride=stride)[0])
        normalized.append(z.detach().reshape(-1))
        h = F.leaky_relu(z, LEAKY_SLOPE)
    z = layer_norm(fc[0] @ h.reshape(-1) + fc[1])
    normalized.append(z.detach())
    h = F.leaky_relu(z, LEAKY_SLOPE)
    return head[0] @ h + head[1], torch.cat(normalized)


# -- §1.1: ObGD ----------------------------------------------------------------------------------
class ObGD:
    """Overshooting-bounded gradient descent with eligibility traces over one network (§1.1)."""

    def __init__(self, params: Sequence[Tensor], lr: float, gamma: float, lamda: float, kappa: float) -> None:
        self.params = list(params)
        self.traces = [torch.zeros_like(p) for p in self.params]
        self.lr, self.gamma, self.lamda, self.kappa = lr, gamma, lamda, kappa

    def step(self, grads: Sequence[Tensor], delta: float, reset: bool) -> tuple[float, float]:
        """``z ← γλz + g``; ``α̂ = α / max(ακ max(|δ|, 1) Σ‖z‖₁, 1)``; ``w ← w + α̂δz``; ``z ← 0``
        after the update when ``reset``. Returns (α̂, Σ‖z‖₁)."""
        with torch.no_grad():
            for trace, grad in zip(self.traces, grads, strict=True):
                trace.mul_(self.gamma * self.lamda).add_(grad)
            l1 = sum(float(trace.abs().sum(dtype=torch.float64)) for trace in self.traces)
            bound = self.lr * self.kappa * max(abs(delta), 1.0) * l1
            step_size = self.lr / max(bound, 1.0)
            for param, trace in zip(self.params, self.traces, strict=True):
                param.add_(trace, alpha=step_size * delta)
            if reset:
                for trace in self.traces:
                    trace.zero_()
        return step_size, l1


def _copy_layers(layers: Sequence[Layer], dtype: torch.dtype) -> list[Layer]:
    return [(w.detach().clone().to(dtype).requires_grad_(True), b.detach().clone().to(dtype).requires_grad_(True))
            for w, b in layers]


def _flat(layers: Sequence[Layer]) -> list[Tensor]:
    return [t for layer in layers for t in layer]


# -- §2: Stream AC(λ) with a diagonal Gaussian policy ----------------------------------------------
@dataclass
class ACUpdate:
    delta: float
    critic_step_size: float
    actor_step_size: float
    critic_trace_norm: float
    actor_trace_norm: float


class StreamAC:
    """Stream AC(λ) for continuous actions (§2): critic ``v`` and actor (mean = linear head,
    std = softplus(linear head)), each with its own ObGD, both driven by the critic's δ."""

    def __init__(self, critic: Sequence[Layer], actor_trunk: Sequence[Layer], mean_head: Layer, std_head: Layer, *,
                 lr: float, gamma: float, lamda: float, kappa_value: float, kappa_policy: float,
                 entropy_coef: float, bootstrap_on_truncation: bool = False, dtype: torch.dtype = torch.float32
                 ) -> None:
        self.dtype = dtype
        self.critic = _copy_layers(critic, dtype)
        self.actor_trunk = _copy_layers(actor_trunk, dtype)
        self.mean_head, self.std_head = _copy_layers([mean_head, std_head], dtype)
        self.gamma, self.entropy_coef = gamma, entropy_coef
        self.bootstrap_on_truncation = bootstrap_on_truncation
        self.critic_optimizer = ObGD(_flat(self.critic), lr, gamma, lamda, kappa_value)
        self.actor_optimizer = ObGD(self.actor_params, lr, gamma, lamda, kappa_policy)

    @property
    def critic_params(self) -> list[Tensor]:
        return _flat(self.critic)

    @property
    def actor_params(self) -> list[Tensor]:
        return _flat([*self.actor_trunk, self.mean_head, self.std_head])

    def _tensor(self, x: Any) -> Tensor:
        return torch.as_tensor(np.asarray(x), dtype=self.dtype)

    def value(self, obs: Any) -> Tensor:
        h = mlp_features(self.critic[:-1], self._tensor(obs))
        weight, bias = self.critic[-1]
        return (weight @ h + bias)[0]

    def policy(self, obs: Any) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of π(·|s)."""
        h = mlp_features(self.actor_trunk, self._tensor(obs))
        return self.mean_head[0] @ h + self.mean_head[1], F.softplus(self.std_head[0] @ h + self.std_head[1])

    def update(self, obs: Any, action: Any, reward: float, next_obs: Any, terminated: bool,
               truncated: bool) -> ACUpdate:
        episode_end = terminated or truncated
        no_bootstrap = terminated or (truncated and not self.bootstrap_on_truncation)  # §1.7
        value = self.value(obs)
        with torch.no_grad():
            next_value = float(self.value(next_obs))
        delta = reward + self.gamma * (1.0 - float(no_bootstrap)) * next_value - float(value.detach())
        critic_grads = torch.autograd.grad(value, self.critic_params)

        mean, std = self.policy(obs)
        a = self._tensor(action)
        log_prob = (-0.5 * ((a - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum()
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(std)).sum()
        sign = float(np.sign(delta))
        actor_grads = torch.autograd.grad(log_prob + self.entropy_coef * sign * entropy, self.actor_params)

        critic_step, critic_norm = self.critic_optimizer.step(critic_grads, delta, episode_end)
        actor_step, actor_norm = self.actor_optimizer.step(actor_grads, delta, episode_end)
        return ACUpdate(delta, critic_step, actor_step, critic_norm, actor_norm)


# -- §2: Stream Q(λ), Watkins-style, on the Atari net -----------------------------------------------
def epsilon(updates: int, horizon: float, start: float = 1.0, end: float = 0.01) -> float:
    """ε after ``updates`` updates: linear from ``start`` to ``end`` over ``horizon`` updates (§2)."""
    return start + min(1.0, updates / horizon) * (end - start)


@dataclass
class QUpdate:
    q_value: float
    delta: float
    step_size: float
    trace_norm: float
    cut: bool
    kink_distance: float
    """The smallest |normalized pre-activation| of the pass that was differentiated."""


class StreamQ:
    """Stream Q(λ) (§2) on the Atari net: ``δ = r + γ(1 − done) max Q(s', ·) − Q(s, a)``, trace of
    ``∇Q(s, a)``, ObGD; traces cut when the episode ends or the action was not the greedy one."""

    def __init__(self, layers: Sequence[Layer], *, lr: float, gamma: float, lamda: float, kappa: float,
                 dtype: torch.dtype = torch.float64) -> None:
        self.dtype = dtype
        self.layers = _copy_layers(layers, dtype)
        self.gamma = gamma
        self.optimizer = ObGD(self.params, lr, gamma, lamda, kappa)

    @property
    def params(self) -> list[Tensor]:
        return _flat(self.layers)

    @property
    def traces(self) -> list[Tensor]:
        return self.optimizer.traces

    def load(self, weights: Sequence[Tensor], traces: Sequence[Tensor]) -> None:
        """Overwrite the weights and traces with another learner's (to compare one update)."""
        with torch.no_grad():
            for mine, theirs in zip([*self.params, *self.traces], [*weights, *traces], strict=True):
                mine.copy_(theirs)

    def q_values(self, obs: Any) -> Tensor:
        with torch.no_grad():
            return atari_q_values(self.layers, torch.as_tensor(np.asarray(obs), dtype=self.dtype))[0]

    def update(self, obs: Any, action: int, reward: float, next_obs: Any, terminated: bool,
               truncated: bool) -> QUpdate:
        episode_end = terminated or truncated
        q, normalized = atari_q_values(self.layers, torch.as_tensor(np.asarray(obs), dtype=self.dtype))
        next_q = self.q_values(next_obs)
        target = reward + (0.0 if episode_end else self.gamma * float(next_q.max()))  # §1.7 default
        delta = target - float(q[action].detach())
        cut = episode_end or action != int(q.detach().argmax())
        grads = torch.autograd.grad(q[action], self.params)
        step_size, trace_norm = self.optimizer.step(grads, delta, cut)
        return QUpdate(float(q[action].detach()), delta, step_size, trace_norm, cut,
                       float(normalized.abs().min()))

"""The paper's streaming normalizers as gymnasium 1.x wrappers (PAPER §1.5–1.7).

gymnasium's own NormalizeObservation/NormalizeReward differ (a prior count, biased
variance, float32 statistics, returns reset only on ``terminated``), so streamx has its own.
Every stateful wrapper has ``state_dict()``/``load_state_dict()`` and a ``frozen`` switch
(frozen: statistics are used but no longer updated, e.g. for evaluation).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from streamx.errors import EnvironmentFault
from streamx.validation import all_finite

__all__ = [
    "AddTimeFeature",
    "ChannelsFirst",
    "CheckFinite",
    "ClipAction",
    "NormalizeObservation",
    "RunningMeanStd",
    "ScaleReward",
    "find_wrapper",
]


class RunningMeanStd:
    """Welford's running mean and UNBIASED variance, elementwise, in float64 (PAPER §1.5).

    The first sample sets the mean; the variance is 1 until two samples were seen. Updated in
    place (``mean`` is the same array throughout; copy it to keep a snapshot), with the same
    float64 operations as ``mean ← mean + (x − mean)/n``, ``S ← S + (x − mean_old)(x − mean_new)``;
    scalar statistics (shape ``()``) are kept as Python floats, which are the same IEEE doubles
    without numpy's per-call overhead.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.count = 0
        self._scalar = tuple(shape) == ()
        self.mean: Any = 0.0 if self._scalar else np.zeros(shape, dtype=np.float64)
        self._sum_sq_dev: Any = 0.0 if self._scalar else np.zeros(shape, dtype=np.float64)
        self._deviation: Any = None if self._scalar else np.zeros(shape, dtype=np.float64)
        self._scratch: Any = None if self._scalar else np.zeros(shape, dtype=np.float64)

    @property
    def var(self) -> Any:
        if self.count < 2:
            return 1.0 if self._scalar else np.ones_like(self.mean)
        return self._sum_sq_dev / (self.count - 1)

    def std(self, epsilon: float, out: np.ndarray | None = None) -> Any:
        """``√(var + ε)`` (into ``out`` for array statistics)."""
        if self._scalar:
            return math.sqrt(self.var + epsilon)
        if out is None:
            out = np.empty_like(self.mean)
        if self.count < 2:
            out.fill(1.0)
        else:
            np.divide(self._sum_sq_dev, self.count - 1, out=out)
        np.add(out, epsilon, out=out)
        return np.sqrt(out, out=out)

    def update(self, x: np.ndarray | float) -> None:
        self.count += 1
        if self._scalar:
            x = float(x)
            if self.count == 1:
                self.mean, self._sum_sq_dev = x, 0.0
                return
            deviation = x - self.mean
            self.mean = self.mean + deviation / self.count
            self._sum_sq_dev = self._sum_sq_dev + deviation * (x - self.mean)
            return
        if self.count == 1:
            np.copyto(self.mean, x, casting="unsafe")
            self._sum_sq_dev.fill(0.0)
            return
        deviation, scratch = self._deviation, self._scratch
        np.subtract(x, self.mean, out=deviation)
        np.divide(deviation, self.count, out=scratch)
        np.add(self.mean, scratch, out=self.mean)
        np.subtract(x, self.mean, out=scratch)
        np.multiply(deviation, scratch, out=scratch)
        np.add(self._sum_sq_dev, scratch, out=self._sum_sq_dev)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": np.array(self.mean, dtype=np.float64),
                "sum_sq_dev": np.array(self._sum_sq_dev, dtype=np.float64)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        if self._scalar:
            self.mean, self._sum_sq_dev = float(state["mean"]), float(state["sum_sq_dev"])
        else:
            np.copyto(self.mean, np.asarray(state["mean"], dtype=np.float64))
            np.copyto(self._sum_sq_dev, np.asarray(state["sum_sq_dev"], dtype=np.float64))


def _box(space: gym.spaces.Space[Any], role: str) -> gym.spaces.Box:
    if not isinstance(space, gym.spaces.Box):
        raise TypeError(f"expected a Box {role} space, got {space}")
    return space


def _float_box(space: gym.spaces.Space[Any]) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, shape=_box(space, "observation").shape, dtype=np.float32)


class NormalizeObservation(gym.ObservationWrapper):
    """``(o − μ) / √(σ² + ε)`` with Welford statistics updated by every observation (reset
    observations included) *before* it is normalized. No clipping. Output float32."""

    def __init__(self, env: gym.Env, epsilon: float = 1e-8, frozen: bool = False) -> None:
        super().__init__(env)
        self.observation_space = _float_box(env.observation_space)
        self.stats = RunningMeanStd(_box(env.observation_space, "observation").shape)
        self.epsilon = epsilon
        self.frozen = frozen
        self._centered: np.ndarray | None = None  # buffers, allocated at the first observation
        self._std: np.ndarray | None = None

    def observation(self, observation: np.ndarray) -> np.ndarray:
        if not self.frozen:
            self.stats.update(observation)
        # (o − μ) / √(σ² + ε) in float64, in preallocated buffers, then one float32 copy
        if self._centered is None:
            self._centered, self._std = np.empty_like(self.stats.mean), np.empty_like(self.stats.mean)
        centered = np.subtract(observation, self.stats.mean, out=self._centered)
        np.divide(centered, self.stats.std(self.epsilon, out=self._std), out=centered)
        return centered.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])


class ScaleReward(gym.Wrapper):
    """Divide rewards by the running standard deviation of a discounted return trace
    (PAPER §1.6).

    ``u ← γ(1 − done)u + r`` with ``done`` this step's terminated-or-truncated flag, Welford
    statistics of ``u`` updated every step, reward ``r / √(Var[u] + ε)``. No mean
    subtraction, no clipping.
    """

    def __init__(self, env: gym.Env, gamma: float = 0.99, epsilon: float = 1e-8, frozen: bool = False) -> None:
        super().__init__(env)
        self.gamma = gamma
        self.epsilon = epsilon
        self.frozen = frozen
        self.stats = RunningMeanStd(())
        self.return_trace = 0.0

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        self.return_trace = self.gamma * (1.0 - float(done)) * self.return_trace + float(reward)
        if not self.frozen:
            self.stats.update(self.return_trace)
        scaled = float(reward) / self.stats.std(self.epsilon)
        return observation, scaled, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict(), "return_trace": self.return_trace}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])
        self.return_trace = float(state["return_trace"])


class AddTimeFeature(gym.Wrapper):
    """Append ``t/T − 0.5`` to the observation, ``t`` = steps since reset (PAPER §1.7)."""

    def __init__(self, env: gym.Env, time_limit: int) -> None:
        super().__init__(env)
        if time_limit <= 0:
            raise ValueError(f"time_limit must be positive, got {time_limit}")
        space = _box(env.observation_space, "observation")
        low = np.append(np.asarray(space.low, dtype=np.float32).reshape(-1), np.float32(-0.5))
        high = np.append(np.asarray(space.high, dtype=np.float32).reshape(-1), np.float32(0.5))
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.time_limit = time_limit
        self.elapsed_steps = 0

    def _with_time(self, observation: np.ndarray) -> np.ndarray:
        feature = self.elapsed_steps / self.time_limit - 0.5
        flat = np.asarray(observation, dtype=np.float32).reshape(-1)
        # a new array every step (the caller may keep the previous one), as np.append makes, cheaper
        out = np.empty(flat.shape[0] + 1, dtype=np.float32)
        out[:-1] = flat
        out[-1] = feature  # rounded to float32 as np.float32(feature) is
        return out

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self.elapsed_steps = 0
        return self._with_time(observation), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.elapsed_steps += 1
        return self._with_time(observation), reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed_steps": self.elapsed_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.elapsed_steps = int(state["elapsed_steps"])


class ClipAction(gym.ActionWrapper):
    """Clip continuous actions to the space's bounds before the environment sees them.

    Unlike gymnasium's ClipAction, the advertised action space keeps its real bounds, so
    agents and error messages see them; the unsquashed Gaussian policy may still propose
    actions outside them (PAPER §2).
    """

    def action(self, action: Any) -> np.ndarray:
        space = _box(self.action_space, "action")
        return np.clip(action, space.low, space.high)


class ChannelsFirst(gym.ObservationWrapper):
    """``(H, W, C)`` image observations → ``(C, H, W)`` float32 (MinAtar, PAPER §3)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        if shape is None:
            raise TypeError(f"expected an (H, W, C) observation space, got {env.observation_space}")
        height, width, channels = shape
        self._shape = (channels, height, width)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=self._shape, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        channels_first = np.empty(self._shape, dtype=np.float32)
        np.copyto(channels_first, observation.transpose(2, 0, 1), casting="unsafe")
        return channels_first


_FLOAT_TYPES = frozenset((float, np.float64, np.float32))
# CheckFinite's dot product of a NaN/inf sets the FPU's invalid flag and NumPy warns; the check reports it instead
warnings.filterwarnings("ignore", "invalid value encountered in dot", RuntimeWarning, __name__)


class CheckFinite(gym.Wrapper):
    """Stop with a clear message when the environment emits an observation of another shape than
    its observation space declares, a NaN/inf observation, or a reward that is not one finite
    number — before any normalizer or learner sees it."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = self.observation_space
        self._shape: tuple[int, ...] | None = tuple(space.shape) if isinstance(space, gym.spaces.Box) else None
        # The common case's scan: a float observation of the declared shape and dtype. A 1-D one of
        # up to 64 values is summed as Python floats with the reward (NaN and inf propagate through a
        # sum; a sum that overflows on huge finite values only sends the step to the exact check);
        # a larger one is one dot product with zeros (0·x is NaN exactly for NaN and ±inf).
        floats = isinstance(space, gym.spaces.Box) and space.dtype is not None and space.dtype.kind == "f"
        self._dtype: np.dtype | None = np.dtype(space.dtype) if floats else None
        self._small = floats and self._shape is not None and len(self._shape) == 1 and self._shape[0] <= 64
        self._zeros: np.ndarray = (np.zeros(math.prod(self._shape), self._dtype) if floats and self._shape is not None
                                   else np.zeros(0))

    def _name(self) -> str:
        return str(self.spec.id if self.spec else self.env)

    def _check(self, observation: Any, reward: Any = None) -> None:
        # The exact check (step's quick path sends here only what it could not pass at once).
        array = observation if type(observation) is np.ndarray else np.asarray(observation)
        if self._shape is not None and array.shape != self._shape:
            raise EnvironmentFault(
                f"environment {self._name()} returned an observation of shape {np.shape(observation)} while its "
                f"observation space declares {self._shape}; fix the environment (or its observation_space)")
        kind = array.dtype.kind
        if kind not in "biuf":
            raise EnvironmentFault(
                f"environment {self._name()} returned an observation of dtype {array.dtype}, not numbers; "
                "fix the environment (or its observation_space)")
        if kind == "f" and not all_finite(array):
            raise EnvironmentFault(
                f"environment {self._name()} returned a non-finite observation "
                f"({observation}); fix the environment or its action inputs — learning cannot continue"
            )
        if reward is None:
            return
        if type(reward) is float and math.isfinite(reward):
            return
        try:
            value = float(reward)
        except (TypeError, ValueError):
            raise EnvironmentFault(f"environment {self._name()} returned a reward that is not one number "
                                   f"({reward!r}); fix the environment to return a scalar reward") from None
        if not math.isfinite(value):
            raise EnvironmentFault(
                f"environment {self._name()} returned a non-finite reward ({reward}); "
                "fix the environment — learning cannot continue"
            )

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self._check(observation)
        return observation, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        observation, reward = result[0], result[1]
        # the common case inline: a finite float ndarray of the declared shape and dtype, a finite float reward
        if (type(observation) is np.ndarray and observation.shape == self._shape and observation.dtype is self._dtype
                and type(reward) in _FLOAT_TYPES):
            if self._small:
                # reward's type is a float type here (checked above), which mypy cannot narrow to
                total = sum(observation.tolist(), reward)  # type: ignore[call-overload]
            else:
                total = (observation if observation.ndim == 1 else observation.reshape(-1)).dot(self._zeros) + reward
            if math.isfinite(total):
                return result
        self._check(observation, reward)
        return result


def find_wrapper(env: gym.Env, wrapper_type: type) -> Any | None:
    """The outermost wrapper of ``wrapper_type`` in ``env``'s stack, or None."""
    current: Any = env
    while isinstance(current, gym.Wrapper):
        if isinstance(current, wrapper_type):
            return current
        current = current.env
    return None

"""The checks at streamx's boundary: everything a caller hands to an agent or a policy.

Agents (both the autograd agents and the numba fast path) and :class:`streamx.evaluate.Policy`
check every observation, action, reward and episode flag here, once, before any network or
compiled kernel sees it; the kernels then rely on exact shapes (they do no bounds checks of
their own). A refused call raises :class:`~streamx.errors.InputError` — one line naming the
argument, what was expected and what was received — and changes nothing.

The checks cost well under a microsecond per array on the common path (a float32 array of the
right shape): a type/shape comparison and one BLAS dot product with a zero vector, whose
result is NaN exactly when the array holds a NaN or an infinity (0·inf = NaN, and NaN
propagates through the sum), so no boolean temporary is made.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from streamx.errors import InputError

__all__ = ["FLOAT32_MAX", "ArrayCheck", "all_finite", "check_discrete_action", "check_flag", "check_reward", "describe"]

# A NaN/inf found by the dot product, or a float64 too large for float32, sets the FPU's flags and
# NumPy warns about it; the check reports it as an InputError instead (a filter per message and
# this module, so the common path pays nothing for it).
warnings.filterwarnings("ignore", "invalid value encountered in dot", RuntimeWarning, __name__)
warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning, __name__)

_FLOAT32 = np.dtype(np.float32)
_NUMERIC_KINDS = frozenset("biuf")  # bool, signed and unsigned integers, floats
# Up to this many values the finiteness scan sums them as Python floats (float32 values cannot
# overflow a double's sum, and NaN/inf propagate through it); beyond, one BLAS dot product.
_SMALL = 20
_INTEGER_TYPES = frozenset((int, np.int64, np.int32, np.int16, np.int8, np.uint64, np.uint32, np.uint16, np.uint8))
_REAL_TYPES = frozenset((float, int, np.float64, np.float32, np.float16, np.int64, np.int32))


def describe(value: Any) -> str:
    """A short description of a value for an error message (its type, shape and dtype)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} elements"
    if value is None:
        return "None"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


_ZEROS: dict[tuple[int, np.dtype], np.ndarray] = {}


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a float array is finite, as one dot product with zeros: 0·x is 0 for
    every finite x and NaN for NaN or ±inf, so the result is NaN exactly when a value is not finite
    (and it cannot overflow, as a plain sum of huge finite values could)."""
    key = (array.size, array.dtype)
    zeros = _ZEROS.get(key)
    if zeros is None:
        zeros = _ZEROS[key] = np.zeros(array.size, dtype=array.dtype)
    flat = array if array.ndim == 1 else array.reshape(-1)
    return math.isfinite(flat.dot(zeros))


class ArrayCheck:
    """Checks one array argument against a fixed shape and returns it as a C-contiguous float32
    array of exactly that shape (the argument itself when it already is one).

    The NaN/inf scan is skipped for the array object this check scanned last (kept referenced,
    so its identity cannot be reused): in a stream the ``next_obs`` of one ``update`` is the
    ``obs`` of the next ``act`` and ``update``, and is scanned once, not three times. A NaN
    written into that same array in place afterwards still never reaches the weights: it makes
    the TD error NaN, which every agent refuses before learning."""

    def __init__(self, shape: tuple[int, ...], who: str, hint: str = ""):
        self.shape = tuple(int(n) for n in shape)
        self.who = who
        self.hint = hint
        self.size = math.prod(self.shape)
        self._one_dimensional = len(self.shape) == 1
        self._zeros = np.zeros(self.size, dtype=np.float32)
        self._scanned: np.ndarray = np.empty(0, dtype=np.float32)  # no caller's array: nothing checked yet

    def __call__(self, value: Any, name: str) -> np.ndarray:
        if value is self._scanned and value.shape == self.shape:  # the array checked last: its dtype and
            return value  # memory layout stay (an in-place NaN is caught by the TD error check, see above)
        if (type(value) is np.ndarray and value.dtype is _FLOAT32 and value.shape == self.shape
                and value.flags.c_contiguous):
            array = value  # the common case: nothing to convert
        else:
            array = self._convert(value, name)
        flat = array if self._one_dimensional else array.reshape(-1)
        # a Python sum of a few doubles is cheaper than a BLAS call
        if not math.isfinite(sum(flat.tolist()) if self.size <= _SMALL else flat.dot(self._zeros)):
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise InputError(f"{self.who}: {name} holds {bad} NaN/inf value{'s' * (bad != 1)}; "
                             "expected finite values (check the environment or its wrappers)", name)
        self._scanned = array
        return array

    def _convert(self, value: Any, name: str) -> np.ndarray:
        expected = f"expected shape {self.shape}{self.hint}"
        if value is None or isinstance(value, (str, bytes, dict, set)):
            raise InputError(f"{self.who}: {name} is {describe(value)}; {expected}, a numeric array", name)
        try:
            array = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nested sequences and the like
            raise InputError(f"{self.who}: {name} is not an array of numbers ({str(exc).splitlines()[0][:80]}); "
                             f"{expected}", name) from None
        if array.dtype.kind not in _NUMERIC_KINDS:
            raise InputError(f"{self.who}: {name} has dtype {array.dtype}; {expected} of real numbers "
                             "(bool, int or float)", name)
        if array.shape != self.shape:
            more = (" — a batch? pass one at a time" if array.ndim == len(self.shape) + 1
                    and array.shape[1:] == self.shape else "")
            raise InputError(f"{self.who}: {name} has shape {array.shape}; {expected}{more}", name)
        return np.ascontiguousarray(array, dtype=np.float32)


def check_discrete_action(value: Any, num_actions: int, who: str) -> int:
    """An action index of a Discrete space: an integer (Python, NumPy or a 0-d integer array)
    in ``[0, num_actions)``; floats, bools and arrays of several values are refused."""
    if type(value) in _INTEGER_TYPES and 0 <= value < num_actions:
        return int(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iu":
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise InputError(f"{who}: action is {describe(value)}; expected an integer action index in "
                         f"[0, {num_actions})", "action")
    index = int(value)
    if not 0 <= index < num_actions:
        raise InputError(f"{who}: action {index} is outside [0, {num_actions}); expected one of the "
                         f"{num_actions} actions", "action")
    return index


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_reward(value: Any, who: str) -> float:
    """A finite real scalar (Python or NumPy number, or a 0-d array) within float32's range, in
    which the agents compute."""
    if type(value) in _REAL_TYPES and -FLOAT32_MAX <= value <= FLOAT32_MAX:  # False for NaN and ±inf
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise InputError(f"{who}: reward is {describe(value)}; expected a real number", "reward")
    reward = float(value)
    if not math.isfinite(reward):
        raise InputError(f"{who}: reward is {reward}; expected a finite number "
                         "(check the environment's rewards)", "reward")
    if abs(reward) > FLOAT32_MAX:
        raise InputError(f"{who}: reward {reward:g} is beyond float32's range; expected a number within "
                         f"±{FLOAT32_MAX:.4g}, as the agents compute in float32 (scale the environment's rewards, "
                         "reward_scaling=true, or clip them)", "reward")
    return reward


def check_flag(value: Any, name: str, who: str) -> bool:
    """An episode flag (terminated / truncated): a bool, NumPy bool or the integer 0 or 1."""
    if value is True or value is False:
        return value
    if isinstance(value, np.bool_) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise InputError(f"{who}: {name} is {describe(value)}; expected True or False", name)

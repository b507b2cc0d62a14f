"""Prediction quality of a state-value learner against the true discounted returns,
computed offline once the stream is over (used for Stream TD(λ), e.g. on the ETT task)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["discounted_returns", "prediction_report"]


def discounted_returns(cumulants: np.ndarray, gamma: float, ends: np.ndarray | None = None) -> np.ndarray:
    """``G_t = c_{t+1} + γ (1 − end_t) G_{t+1}`` backwards, with ``cumulants[t] = c_{t+1}`` (the
    reward of transition t) and ``ends[t]`` true where transition t ends an episode. The state
    after the last cumulant is terminal (``G_{n−1} = c_n``). This is the target the TD error
    ``δ_t = c_{t+1} + γ v(s_{t+1}) − v(s_t)`` estimates; ``returns[t]`` pairs with ``v(s_t)``.
    """
    cumulants = np.asarray(cumulants, dtype=np.float64)
    continues = np.ones_like(cumulants) if ends is None else 1.0 - np.asarray(ends, dtype=np.float64)
    returns = np.empty_like(cumulants)
    following = 0.0
    for t in range(len(cumulants) - 1, -1, -1):
        following = cumulants[t] + gamma * continues[t] * following
        returns[t] = following
    return returns


def _errors(predictions: np.ndarray, returns: np.ndarray, td_errors: np.ndarray) -> dict[str, float | int]:
    prediction_mse = float(np.mean((predictions - returns) ** 2))
    mean_predictor_mse = float(np.var(returns))  # MSE of always predicting mean(G)
    return {
        "steps": len(returns),
        "mean_squared_td_error": float(np.mean(td_errors**2)),
        "prediction_mse": prediction_mse,
        "mean_predictor_mse": mean_predictor_mse,
        "normalized_prediction_error": prediction_mse / mean_predictor_mse if mean_predictor_mse > 0 else math.nan,
    }


def prediction_report(predictions: np.ndarray, returns: np.ndarray, td_errors: np.ndarray) -> dict[str, float | int]:
    """How well ``predictions[t] = v(s_t)`` matched the true returns ``returns[t] = G_t``.

    ``normalized_prediction_error`` = prediction_mse / mean_predictor_mse, i.e. 1 − R²: 1 is no
    better than always predicting mean(G), far below 1 is far better. The same numbers over
    the last half of the stream (after most learning happened) carry a ``last_half_`` prefix;
    its mean predictor uses the mean of G over that half. NaN when the returns are constant.
    """
    predictions, returns, td_errors = (np.asarray(a, dtype=np.float64).reshape(-1)
                                       for a in (predictions, returns, td_errors))
    if not len(predictions) == len(returns) == len(td_errors) or len(returns) == 0:
        raise ValueError(
            f"predictions ({len(predictions)}), returns ({len(returns)}) and td_errors ({len(td_errors)}) "
            "must be non-empty and of the same length, one entry per transition"
        )
    half = len(returns) // 2
    last_half = _errors(predictions[half:], returns[half:], td_errors[half:])
    return {**_errors(predictions, returns, td_errors), **{f"last_half_{k}": v for k, v in last_half.items()}}

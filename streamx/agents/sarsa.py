"""Stream SARSA(λ) (PAPER §2): on-policy SARSA(λ) with ObGD.

``δ = r + γ(1 − done) Q(s', a') − Q(s, a)`` with ``a'`` the next action actually taken: the
agent draws ``a'`` ε-greedily from ``Q(s', ·)`` during the update and ``act(s')`` returns it.
Traces are cut only at episode ends. Unlike the authors' code, the first action of a new
episode is drawn from the reset observation, not from the terminal one (PAPER §7).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from streamx.agents.action_value import ActionValueAgent, QValues
from streamx.errors import NonFiniteError
from streamx.validation import describe

__all__ = ["StreamSARSA"]


class StreamSARSA(ActionValueAgent):
    algo = "stream_sarsa"
    fast_agents: ClassVar[dict[str, str]] = {
        "mlp": "streamx.fast.agents:FastStreamSARSA",
        "atari": "streamx.fast.conv:ConvStreamSARSA",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_action: int | None = None

    def _act(self, obs: np.ndarray, deterministic: bool) -> int:
        action, self._next_action = self._next_action, None  # a pending a' is used once or dropped
        if action is not None and not deterministic:
            return action
        return super()._act(obs, deterministic)

    def _update(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        # a' is drawn before the TD error can be checked: a refused update must not keep the draw
        rng_state, next_action = self.np_random.bit_generator.state, self._next_action
        try:
            return super()._update(obs, action, reward, next_obs, terminated, truncated)
        except NonFiniteError:
            self.np_random.bit_generator.state, self._next_action = rng_state, next_action
            raise

    def _bootstrap_value(self, next_q_values: QValues, episode_continues: bool) -> Any:
        next_action = self._epsilon_greedy(next_q_values)
        if episode_continues:
            self._next_action = next_action
        return next_q_values[next_action]

    def _cut_traces(self, action: int, q_values: QValues) -> bool:
        return False

    def end_episode(self) -> None:
        super().end_episode()
        self._next_action = None

    def env_restarted(self) -> None:
        self._next_action = None  # drawn from the old game's last frame

    def _extra_state(self) -> dict[str, Any]:
        return {"next_action": -1 if self._next_action is None else self._next_action}

    def _extra_state_problem(self, extra: Mapping[str, Any]) -> str | None:
        next_action = extra.get("next_action", -1)
        n = self._num_actions
        if isinstance(next_action, bool) or not isinstance(next_action, int | np.integer) \
                or not (-1 <= next_action < (n if n is not None else 0)):
            return f"its pending next action is {describe(next_action)}, not -1 (none) or an action index below {n}"
        return None

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        next_action = int(state.get("next_action", -1))
        self._next_action = None if next_action < 0 else next_action

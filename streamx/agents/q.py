"""Stream Q(λ) (PAPER §2): Watkins-style Q(λ) with ObGD.

``δ = r + γ(1 − done) max_a' Q(s', a') − Q(s, a)``; the trace of ``∇Q(s, a)`` is cut after
the update when the episode ends or when the action taken was not the greedy one (an
exploratory draw that happens to equal the greedy action keeps the trace).
"""

from __future__ import annotations

from typing import Any, ClassVar

from streamx.agents.action_value import ActionValueAgent, QValues

__all__ = ["StreamQ"]


class StreamQ(ActionValueAgent):
    algo = "stream_q"
    fast_agents: ClassVar[dict[str, str]] = {
        "mlp": "streamx.fast.agents:FastStreamQ",
        "atari": "streamx.fast.conv:ConvStreamQ",
    }

    def _bootstrap_value(self, next_q_values: QValues, episode_continues: bool) -> Any:
        return next_q_values.max()

    def _cut_traces(self, action: int, q_values: QValues) -> bool:
        # Greedy w.r.t. the same (pre-update) weights act() used, so ties break identically.
        return action != int(q_values.argmax())

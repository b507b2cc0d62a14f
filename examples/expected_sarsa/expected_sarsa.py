"""Stream Expected SARSA(λ), a streamx plugin: its TD target bootstraps from the expected value
of Q(s', ·) under the ε-greedy policy, (1 − ε)·max Q(s', ·) + ε·mean Q(s', ·); traces are cut
at episode ends only. Installed, it is `streamx train stream_expected_sarsa --env CartPole-v1`.
"""

from streamx.agents.action_value import ActionValueAgent


class StreamExpectedSARSA(ActionValueAgent):
    algo = "stream_expected_sarsa"

    def _bootstrap_value(self, next_q_values, episode_continues):
        epsilon = self.epsilon
        return (1.0 - epsilon) * next_q_values.max() + epsilon * next_q_values.mean()

    def _cut_traces(self, action, q_values):
        return False

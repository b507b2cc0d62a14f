"""``streamx bench`` and its naive baseline (benchmarks/naive.py)."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import streamx.bench
from streamx import Config, ConfigError, make_agent
from streamx.envs import make_env

naive = streamx.bench.load_naive()
needs_naive = pytest.mark.skipif(naive is None, reason="benchmarks/naive.py is not next to the package")


def _cartpole_transitions(steps: int) -> tuple[gym.Env, list[tuple[Any, ...]]]:
    env = make_env(Config(env="CartPole-v1", seed=0))
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    stream = []
    for t in range(steps):
        action = int(env.action_space.sample())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        stream.append((obs, action, float(reward), next_obs, bool(terminated), bool(truncated or t == 12)))
        obs = env.reset()[0] if terminated or truncated or t == 12 else next_obs
    return env, stream


def _copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    with torch.no_grad():
        for a, b in zip(source.parameters(), target.parameters(), strict=True):
            assert a.shape == b.shape
            b.copy_(a)


def _assert_same_weights(expected: torch.nn.Module, got: torch.nn.Module) -> None:
    for a, b in zip(expected.parameters(), got.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@needs_naive
def test_naive_q_learns_as_the_autograd_agent():
    env, stream = _cartpole_transitions(30)
    config = Config(algo="stream_q", env="CartPole-v1", hidden_sizes=[32, 32])
    torch.manual_seed(0)
    reference = make_agent("stream_q", env.observation_space, env.action_space, config, fast_path="off")
    baseline = naive.make_naive_agent(config, env.observation_space, env.action_space)
    _copy_weights(reference.q_network, baseline.q_network)
    for obs, action, reward, next_obs, terminated, truncated in stream:
        expected = reference.update(obs, action, reward, next_obs, terminated, truncated)
        got = baseline.update(obs, action, reward, next_obs, terminated, truncated)
        # float64 TD errors from separate passes vs float32 from one batched pass: 1e-7 at first,
        # growing to ~1e-5 over 30 updates
        assert got["td_error"] == pytest.approx(expected["td_error"], rel=1e-4, abs=1e-5)
        assert got["effective_step_size"] == pytest.approx(expected["effective_step_size"], rel=1e-4)
        _assert_same_weights(reference.q_network, baseline.q_network)


@needs_naive
@pytest.mark.parametrize("continuous", [True, False])
def test_naive_ac_learns_as_the_autograd_agent(continuous):
    env, stream = _cartpole_transitions(16)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous else env.action_space
    rng = np.random.default_rng(0)
    config = Config(algo="stream_ac", env="CartPole-v1", hidden_sizes=[32, 32])
    torch.manual_seed(0)
    reference = make_agent("stream_ac", env.observation_space, action_space, config, fast_path="off")
    baseline = naive.make_naive_agent(config, env.observation_space, action_space)
    _copy_weights(reference.critic, baseline.critic)
    _copy_weights(reference.actor, baseline.actor)
    for step, (obs, action, reward, next_obs, terminated, truncated) in enumerate(stream[:16]):
        if continuous:
            action = rng.normal(size=2).astype(np.float32)
        expected = reference.update(obs, action, reward, next_obs, terminated, truncated)
        got = baseline.update(obs, action, reward, next_obs, terminated, truncated)
        for key in ("td_error", "effective_step_size", "policy_effective_step_size", "entropy"):
            # float64 TD errors from separate passes vs float32 from one batched pass: agree to ~1e-5
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-5), (key, step)
        _assert_same_weights(reference.critic, baseline.critic)
        _assert_same_weights(reference.actor, baseline.actor)


@needs_naive
def test_quick_bench_writes_every_column(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert streamx.bench.main(["--quick", "--cases", "q-cartpole", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    row = result["cases"]["q-cartpole"]
    assert set(row["steps_per_second"]) == {"env", "naive", "autograd", "fast", "api", "unchecked"}
    assert all(rate > 0 for rate in row["steps_per_second"].values())
    assert set(row["ratios"]) >= {"fast_vs_naive", "fast_vs_autograd", "fast_vs_unchecked", "api_vs_unchecked"}
    assert row["ratios"]["fast_vs_unchecked"] == round(row["steps_per_second"]["fast"]
                                                       / row["steps_per_second"]["unchecked"], 3)
    assert row["target"] == 8.0 and isinstance(row["passed"], bool)
    assert result["machine"]["torch_threads"] == 1 and len(result["machine"]["load_average_before"]) == 3
    printed = capsys.readouterr().out
    assert "fast/naive" in printed and "q-cartpole" in printed and "input checks in training: fast" in printed


def test_bench_says_when_the_naive_baseline_is_unavailable(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(streamx.bench, "_NAIVE_PATH", tmp_path / "missing" / "naive.py")
    out = tmp_path / "bench.json"
    streamx.bench.main(["--quick", "--cases", "q-cartpole", "--kinds", "env,naive", "--out", str(out)])
    result = json.loads(out.read_text())
    assert any("naive baseline unavailable" in note for note in result["notes"])
    assert set(result["cases"]["q-cartpole"]["steps_per_second"]) == {"env"}
    assert result["cases"]["q-cartpole"]["passed"] is None
    assert "naive baseline unavailable" in capsys.readouterr().out


def test_bench_can_measure_a_number_of_steps(tmp_path):
    out = tmp_path / "bench.json"
    streamx.bench.main(["--cases", "q-cartpole", "--kinds", "env,fast", "--steps", "300", "--warmup-steps", "10",
                        "--no-startup", "--out", str(out)])
    measured = json.loads(out.read_text())["cases"]["q-cartpole"]["measured"]
    assert measured["env"]["steps"] == measured["fast"]["steps"] == 300


@pytest.mark.parametrize("argv", [["--cases", "q-nowhere"], ["--kinds", "env,magic"], ["--seconds", "0"],
                                  ["--steps", "-1"], ["--out", "/nonexistent-dir/bench.json", "--cases", "q-cartpole"]])
def test_bench_rejects_bad_options_with_a_config_error(argv):
    with pytest.raises(ConfigError):
        streamx.bench.main(argv)


def test_bench_measures_the_reference_atari_set_up_beside_the_current_one(tmp_path):
    pytest.importorskip("ale_py")
    out = tmp_path / "bench.json"
    streamx.bench.main(["--cases", "q-atari-breakout,q-cartpole", "--kinds", "env,env_before", "--steps", "40",
                        "--warmup-steps", "5", "--no-startup", "--out", str(out)])
    cases = json.loads(out.read_text())["cases"]
    atari = cases["q-atari-breakout"]
    assert set(atari["steps_per_second"]) == {"env", "env_before"}
    assert atari["ratios"]["env_vs_env_before"] > 0 and atari["before_target"] == 1.6
    assert set(cases["q-cartpole"]["steps_per_second"]) == {"env"}  # the same set-up outside Atari


def test_results_files_of_earlier_versions_read_with_the_current_keys():
    from pathlib import Path

    path = Path(streamx.bench.__file__).resolve().parent.parent / "benchmarks" / "results" / "dev-machine-2cpu.json"
    if not path.is_file():
        pytest.skip("benchmarks/results is not next to the package")
    assert "original_steps_per_second_in_issue" in path.read_text()
    row = streamx.bench.read_results(path)["cases"]["q-atari-breakout"]
    assert row["original_steps_per_second"] == 263.0 and "original_steps_per_second_in_issue" not in row


def test_the_unchecked_kind_learns_exactly_what_the_checked_ones_do():
    """``fast`` (the training loop's procedure), ``api`` (act/update) and ``unchecked`` differ only
    by the checks: the same seed gives the same weights after the same steps (so the rate ratios
    are the checks' cost alone), and ``unchecked`` has no CheckFinite wrapper."""
    from streamx.wrappers import CheckFinite, find_wrapper

    case = streamx.bench.CASES["q-cartpole"]
    loops = [streamx.bench._Loop(kind, case, None) for kind in ("fast", "api", "unchecked")]
    try:
        assert [find_wrapper(loop.env, CheckFinite) is None for loop in loops] == [False, False, True]
        for loop in loops:
            loop.run(steps=300)
        fast, *others = (loop.agent.state_dict()["networks"] for loop in loops)
        for other in others:
            for name, weights in fast.items():
                for key, value in weights.items():
                    assert torch.equal(value, other[name][key]), (name, key)
    finally:
        for loop in loops:
            loop.close()

"""The boundary checks (streamx.validation): every agent refuses bad data with one clear
InputError and unchanged state, on the autograd and the fast (numba) path alike.

The fuzz test runs hypothesis in a child process: a memory error in a kernel would kill that
process (a segfault or an abort), which the parent sees as a failed exit status."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from streamx.agents import make_agent
from streamx.errors import InputError, NonFiniteError
from streamx.validation import ArrayCheck, check_discrete_action, check_flag, check_reward

VECTOR = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
MINATAR = gym.spaces.Box(0.0, 1.0, (4, 10, 10), np.float32)
DISCRETE = gym.spaces.Discrete(3)
CONTINUOUS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

# (algo, action space) × (observation space) × fast_path: every agent the fuzz test covers
AGENT_KINDS = [(algo, space) for algo, space in (("stream_td", DISCRETE), ("stream_q", DISCRETE),
                                                   ("stream_sarsa", DISCRETE), ("stream_ac", DISCRETE),
                                                   ("stream_ac", CONTINUOUS))]


# -- the checks themselves ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 3, 4, 7, 8, 9, 16, 17, 31, 33, 400])
def test_every_nan_or_inf_position_is_found(size):
    check = ArrayCheck((size,), "test")
    clean = np.linspace(-3.0, 3.0, size).astype(np.float32)
    assert check(clean, "obs") is clean  # the common case: the caller's array, not a copy
    for position in range(size):
        for bad in (math.nan, math.inf, -math.inf):
            array = clean.copy()
            array[position] = bad
            with pytest.raises(InputError, match="1 NaN/inf value;"):
                check(array, "obs")


def test_float32_overflow_is_refused_and_other_dtypes_are_converted():
    check = ArrayCheck((2,), "test")
    with pytest.raises(InputError, match="NaN/inf"):
        check(np.array([1e39, 0.0]), "obs")  # finite in float64, inf in float32
    converted = check([1, 2], "obs")
    assert converted.dtype == np.float32 and converted.tolist() == [1.0, 2.0]
    assert check(np.array([True, False]), "obs").tolist() == [1.0, 0.0]
    assert check(np.arange(4, dtype=np.float64)[::2], "obs").flags.c_contiguous


@pytest.mark.parametrize("value, message", [
    (None, r"obs is None; expected shape \(4,\)"),
    ("abcd", "obs is str"),
    (np.ones((2, 4)), r"obs has shape \(2, 4\); expected shape \(4,\).*a batch\? pass one at a time"),
    (np.ones(3), r"obs has shape \(3,\); expected shape \(4,\)"),
    (np.ones(100_000), r"obs has shape \(100000,\); expected shape \(4,\)"),
    (np.ones(0), r"obs has shape \(0,\)"),
    (np.ones(4, dtype=complex), "dtype complex128"),
    (np.array(["a", "b", "c", "d"]), "dtype <U1"),
    ([[1.0], [2.0, 3.0]], "not an array of numbers"),
])
def test_array_check_messages_name_expected_and_received(value, message):
    with pytest.raises(InputError, match=message) as caught:
        ArrayCheck((4,), "stream_q")(value, "obs")
    assert caught.value.argument == "obs"
    assert "\n" not in str(caught.value)


def test_scalar_checks():
    assert check_discrete_action(np.int64(2), 3, "q") == 2
    assert check_discrete_action(np.array(1), 3, "q") == 1
    for bad in (0.5, 1.0, True, np.float32(1.0), None, "1", np.array([1]), -1, 3, 10**9, -(10**30)):
        with pytest.raises(InputError, match="action"):
            check_discrete_action(bad, 3, "q")
    assert check_reward(np.float32(0.5), "q") == 0.5 and check_reward(np.array(2), "q") == 2.0
    for bad in (math.nan, math.inf, None, "1", np.ones(2), True):
        with pytest.raises(InputError, match="reward"):
            check_reward(bad, "q")
    assert check_reward(3.4e38, "q") == 3.4e38 and check_reward(-3.4e38, "q") == -3.4e38
    for bad in (1e300, -3.5e38, np.float64(1e39), np.array(-1e300), 10**40):  # float32 overflow: inf in the agent
        with pytest.raises(InputError, match=r"beyond float32's range; expected a number within ±3.403e\+38"):
            check_reward(bad, "q")
    assert check_flag(np.bool_(True), "terminated", "q") is True and check_flag(0, "truncated", "q") is False
    for bad in (None, 2, "yes", np.ones(1), 0.0):
        with pytest.raises(InputError, match="terminated"):
            check_flag(bad, "terminated", "q")


# -- the agents -----------------------------------------------------------------------------------

def _agent(algo, observation_space, action_space, fast_path):
    torch.manual_seed(0)
    return make_agent(algo, observation_space, action_space, fast_path=fast_path, hidden_sizes=[16, 16])


def _fingerprint(agent) -> str:
    """A digest of everything in the agent's state_dict (weights, traces, RNGs, counters)."""
    digest = hashlib.sha256()

    def visit(obj):
        if isinstance(obj, torch.Tensor):
            digest.update(obj.detach().contiguous().numpy().tobytes() if obj.dtype != torch.bfloat16 else b"")
        elif isinstance(obj, np.ndarray):
            digest.update(obj.tobytes())
        elif isinstance(obj, dict):
            for key in sorted(obj, key=str):
                digest.update(str(key).encode())
                visit(obj[key])
        elif isinstance(obj, list | tuple):
            for value in obj:
                visit(value)
        else:
            digest.update(repr(obj).encode())

    visit(agent.state_dict())
    return digest.hexdigest()


@pytest.mark.parametrize("fast_path", ["off", "on"])
@pytest.mark.parametrize("algo, action_space", AGENT_KINDS)
def test_a_refused_call_changes_nothing(algo, action_space, fast_path):
    agent = _agent(algo, VECTOR, action_space, fast_path)
    obs, next_obs = np.full(4, 0.1, np.float32), np.full(4, -0.2, np.float32)
    action = agent.act(obs) if algo != "stream_td" else None
    agent.update(obs, action, 1.0, next_obs, False, False)
    before = _fingerprint(agent)
    with pytest.raises(InputError, match=r"has shape \(5,\); expected shape \(4,\)"):
        agent.update(obs, action, 1.0, np.ones(5, np.float32), False, False)
    with pytest.raises(InputError, match="NaN"):
        agent.act(np.array([0.0, math.nan, 0.0, 0.0], np.float32))
    if algo != "stream_td":
        bad_action = np.array([math.nan, 0.0], np.float32) if action_space is CONTINUOUS else 10**9
        with pytest.raises(InputError, match="action"):
            agent.update(obs, bad_action, 1.0, next_obs, False, False)
    assert _fingerprint(agent) == before
    assert agent.num_updates == 1


def test_stream_td_ignores_its_action_and_checks_the_rest():
    agent = _agent("stream_td", VECTOR, None, "on")
    obs = np.zeros(4, np.float32)
    assert agent.act(obs) is None
    agent.update(obs, "anything: stream_td does not use the action", 0.0, obs, False, False)
    with pytest.raises(InputError, match="predict|obs"):
        agent.predict(np.zeros(3))


def test_refused_sarsa_update_keeps_its_rng_and_pending_action():
    agent = _agent("stream_sarsa", VECTOR, DISCRETE, "off")
    obs = np.full(4, 0.3, np.float32)
    agent.update(obs, agent.act(obs), 1.0, obs, False, False)
    with torch.no_grad():
        agent.q_network[-1].bias.fill_(math.inf)  # δ = r + γ·inf − inf = NaN after a' was drawn
    before = _fingerprint(agent)
    with pytest.raises(NonFiniteError):
        agent.update(obs, 0, 1.0, obs, False, False)
    assert _fingerprint(agent) == before


# -- the fuzz test, in a child process --------------------------------------------------------

def _bad_inputs(st, obs_shape, action_space):
    """A hypothesis strategy of (argument, bad value) pairs."""
    size = math.prod(obs_shape)
    shapes = st.one_of(
        st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple),
        st.just((2, *obs_shape)), st.just((size,) if len(obs_shape) > 1 else (size + 1,)),
        st.just((200_000,)), st.just((0,)), st.just((*obs_shape[:-1], obs_shape[-1] + 1)))
    wrong_shape = shapes.filter(lambda s: s != obs_shape).map(lambda s: np.ones(s, np.float32))
    non_finite = st.tuples(st.integers(0, size - 1), st.sampled_from([math.nan, math.inf, -math.inf, 1e39]),
                           st.sampled_from([np.float32, np.float64])).map(
        lambda t: _poisoned(obs_shape, *t))
    odd_types = st.sampled_from([None, "obs", b"x", {"a": 1}, np.ones(obs_shape, complex),
                                 np.full(obs_shape, "a"), np.empty(obs_shape, object)])
    bad_obs = st.one_of(wrong_shape, non_finite, odd_types)
    if isinstance(action_space, gym.spaces.Discrete):
        n = int(action_space.n)
        bad_action = st.one_of(st.integers(max_value=-1), st.integers(min_value=n),
                               st.floats(allow_nan=True), st.sampled_from([None, "0", True, np.ones(2, np.int64)]))
    elif action_space is not None:
        dim = action_space.shape[0]
        bad_action = st.one_of(
            st.integers(0, 5).filter(lambda k: k != dim).map(lambda k: np.zeros(k, np.float32)),
            st.tuples(st.integers(0, dim - 1), st.sampled_from([math.nan, math.inf])).map(
                lambda t: _poisoned((dim,), t[0], t[1], np.float32)),
            st.sampled_from([None, "a", 0.5]))
    else:
        bad_action = st.nothing()
    bad_reward = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e39, None, "1", np.ones(2), True])
    bad_flag = st.sampled_from([None, 2, "yes", np.ones(2), 0.5])
    arguments = [st.tuples(st.just("act"), bad_obs), st.tuples(st.just("obs"), bad_obs),
                 st.tuples(st.just("next_obs"), bad_obs), st.tuples(st.just("reward"), bad_reward),
                 st.tuples(st.just("terminated"), bad_flag), st.tuples(st.just("truncated"), bad_flag)]
    if action_space is not None:
        arguments.append(st.tuples(st.just("action"), bad_action))
    return st.one_of(*arguments)


def _poisoned(shape, index, value, dtype):
    array = np.full(shape, 0.5, dtype=dtype)
    with np.errstate(over="ignore"):  # 1e39 becomes inf in float32, as intended
        array.reshape(-1)[index] = value
    return array


def _refusal_test(agent, valid, strategy):
    """A hypothesis test: every bad value of ``strategy`` is refused with one InputError line
    that names its argument, and the agent's state stays exactly as it was."""
    from hypothesis import HealthCheck, given, settings

    @settings(derandomize=True, max_examples=20, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def refused(argument_and_value):
        argument, value = argument_and_value
        before = _fingerprint(agent)
        try:
            if argument == "act":
                agent.act(value)
            else:
                agent.update(**{**valid, argument: value})
        except InputError as exc:
            assert exc.argument == ("obs" if argument == "act" else argument), (argument, str(exc))
            assert "\n" not in str(exc) and "expected" in str(exc), str(exc)
        else:
            raise AssertionError(f"{type(agent).__name__} accepted {argument}={value!r}")
        assert _fingerprint(agent) == before, f"{type(agent).__name__}: state changed by {argument}"

    return refused


def _fuzz_main() -> None:  # runs in the child process
    from hypothesis import strategies as st

    checked = 0
    for fast_path in ("off", "on"):
        for observation_space in (VECTOR, MINATAR):
            for algo, action_space in AGENT_KINDS:
                agent = _agent(algo, observation_space, action_space, fast_path)
                obs = np.full(observation_space.shape, 0.25, np.float32)
                valid = {"obs": obs, "action": agent.act(obs) if algo != "stream_td" else None, "reward": 1.0,
                         "next_obs": obs * 0.5, "terminated": False, "truncated": False}
                agent.update(**valid)
                strategy = _bad_inputs(st, observation_space.shape, action_space if algo != "stream_td" else None)
                _refusal_test(agent, valid, strategy)()
                checked += 1
    print(f"FUZZ OK {checked} agents")


def test_fuzz_every_agent_on_both_paths_in_a_child_process():
    pytest.importorskip("hypothesis")
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--fuzz"], capture_output=True, text=True,
                          timeout=900, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "FUZZ OK 20 agents" in done.stdout


if __name__ == "__main__" and sys.argv[1:] == ["--fuzz"]:
    torch.set_num_threads(1)
    _fuzz_main()


class _WrongShapeEnv(gym.Env):
    """Declares 3-value observations; returns ``size`` values, or a reward that is an array."""

    def __init__(self, size: int = 5, reward: object = 1.0):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.size, self.reward = size, reward

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(self.size, np.float32), self.reward, False, False, {}


@pytest.mark.parametrize(("size", "reward", "message"), [
    (5, 1.0, r"observation of shape \(5,\) while its observation space declares \(3,\)"),
    (200_000, 1.0, r"observation of shape \(200000,\)"),
    (3, np.ones(2), "reward that is not one number"),
])
def test_check_finite_refuses_env_outputs_off_the_declared_space(size, reward, message):
    """Before any normalizer (which would broadcast or raise numpy's error) sees them."""
    from streamx.errors import EnvironmentFault
    from streamx.wrappers import CheckFinite, NormalizeObservation

    env = NormalizeObservation(CheckFinite(_WrongShapeEnv(size, reward)))
    env.reset(seed=0)
    with pytest.raises(EnvironmentFault, match=message):
        env.step(0)


def test_the_command_starts_without_loading_torch():
    """The public names are imported on first use: a Ctrl-C while the command starts is caught by
    its own handler (one line), not raised from inside torch's import."""
    probe = ("import sys, streamx.cli; assert 'torch' not in sys.modules; "
             "import streamx; streamx.make_agent; assert 'torch' in sys.modules; print(streamx.__version__)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", ["gemm", "torch"])
def test_the_conv_networks_public_methods_check_their_arrays(kind):
    """GemmConvNetwork's kernels do no bounds checks: its public methods (and the torch
    fallback's) refuse a wrong size, dtype or a NaN before any kernel runs, and change nothing."""
    from streamx.fast import gemm
    from streamx.fast.conv import GemmConvNetwork, TorchConvNetwork

    if kind == "gemm" and not gemm.AVAILABLE:
        pytest.skip(gemm.REASON)
    network_class = GemmConvNetwork if kind == "gemm" else TorchConvNetwork
    space = gym.spaces.Box(-np.inf, np.inf, (4, 84, 84), np.float32)
    agent = make_agent("stream_q", space, gym.spaces.Discrete(4), hidden_sizes=[256], fast_path="on")
    agent._q = network = network_class(agent.q_network, *_conv_layout(agent), agent.config.layer_norm,
                                       agent.optimizer, (4, 84, 84))
    x = np.random.default_rng(0).normal(size=4 * 84 * 84).astype(np.float32)
    outputs = network.forward(x).copy()
    state = network.state.copy()  # weights, trace and the optimizer's other rows
    bad_inputs = [np.zeros(5, np.float32), np.zeros(4 * 84 * 84 + 64, np.float32), np.zeros((4, 84, 84), np.float32),
                  np.where(np.arange(4 * 84 * 84) == 7, np.nan, x).astype(np.float32), "x", None]
    for bad in bad_inputs:
        for method in (network.forward, network.forward_kept, network.holds):
            with pytest.raises(InputError, match=f"{network_class.__name__}: x "):
                method(bad)
    for bad in (np.zeros(3, np.float32), np.array([np.inf, 0, 0, 0], np.float32), np.zeros((1, 4), np.float32)):
        with pytest.raises(InputError, match=f"{network_class.__name__}: output_gradient "):
            network.accumulate_trace(bad)
    assert np.array_equal(network.state, state)
    assert network.holds(x) and np.array_equal(network.forward(x), outputs)
    # float64 and list inputs of the right size are converted, as the agents' checks do
    assert np.array_equal(network.forward(x.astype(np.float64), keep=False), outputs)
    assert network.accumulate_trace([1.0, 0.0, 0.0, 0.0]) > 0


def _conv_layout(agent):
    from streamx.fast.agents import _hidden_and_output

    return _hidden_and_output(agent.q_network)


def test_a_network_too_large_for_memory_is_refused_before_it_is_allocated(monkeypatch):
    """hidden_sizes (or observations) far too large: one ConfigError naming the size and the fix,
    not an allocator error or a process killed for memory."""
    import streamx.agents.base as base
    from streamx.errors import ConfigError

    box = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    with pytest.raises(ConfigError, match=r"hidden_sizes=\[1000000000000\]: [0-9,]{17} parameters.*"
                                          r"use smaller hidden_sizes"):
        make_agent("stream_q", box, gym.spaces.Discrete(2), hidden_sizes=[10**12])
    monkeypatch.setattr(base, "_physical_memory", lambda: 1_000_000)  # a 1 MB machine
    make_agent("stream_q", box, gym.spaces.Discrete(2), hidden_sizes=[64, 64])  # ≈ 4.6k parameters: 93 kB
    with pytest.raises(ConfigError, match=r"an MLP .* hidden_sizes=\[512, 512\]: 265,729 parameters, so the "
                                          r"agent would need ≈ 5.31 MB, more than this machine's 1 MB"):
        make_agent("stream_ac", box, gym.spaces.Box(-1, 1, (2,), np.float32), hidden_sizes=[512, 512])
    with pytest.raises(ConfigError, match=r"the conv net for observations of shape \(4, 84, 84\).*downsample"):
        make_agent("stream_q", gym.spaces.Box(0, 1, (4, 84, 84), np.float32), gym.spaces.Discrete(4))
    with pytest.raises(ConfigError, match=r"avg's actor and critic .* hidden_sizes=\[256, 256\]"):
        make_agent("avg", box, gym.spaces.Box(-1, 1, (2,), np.float32), hidden_sizes=[256, 256])


def test_more_threads_than_usable_cpus_are_refused_before_the_run_starts(tmp_path):
    from streamx.errors import ConfigError
    from streamx.run import resolve_config, train
    from streamx.rundir import usable_cpus

    too_many = usable_cpus() + 1
    config = resolve_config("stream_q", "CartPole-v1", overrides={"threads": too_many, "total_steps": 50,
                                                                   "run_dir": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match=rf"threads={too_many} is more than the {too_many - 1} CPUs"):
        train(config)
    assert not (tmp_path / "run").exists()


def _states_equal(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_states_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_states_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool((a == b).all())
    return bool(a == b)


@pytest.mark.parametrize(("algo", "action_space"), [
    ("stream_q", gym.spaces.Discrete(3)), ("stream_sarsa", gym.spaces.Discrete(3)),
    ("stream_ac", gym.spaces.Box(-1, 1, (2,), np.float32)), ("stream_td", None),
    ("avg", gym.spaces.Box(-1, 1, (2,), np.float32))])
@pytest.mark.parametrize("fast_path", ["auto", "off"])
def test_load_state_dict_refuses_a_state_that_does_not_fit_and_changes_nothing(algo, action_space, fast_path):
    """A state of other shapes, with NaN/inf, out-of-range entries or another optimizer setting is
    refused (one ConfigError naming the entry) before anything is loaded; a good one loads."""
    import copy

    from streamx.errors import ConfigError

    box = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)

    def build(**overrides):
        torch.manual_seed(0)
        return make_agent(algo, box, action_space, hidden_sizes=[8], fast_path=fast_path, **overrides)

    source, obs = build(), np.zeros(4, np.float32)
    for _ in range(3):
        source.update(obs, source.act(obs) if algo != "stream_td" else None, 1.0, obs, False, False)
    good = source.state_dict()
    first_net = next(iter(good["networks"]))
    weight = next(k for k in good["networks"][first_net] if k.endswith("weight"))
    optimizer = next(iter(good["optimizers"]))
    traced = good["optimizers"][optimizer]["state"][0]
    trace = next(k for k, v in traced.items() if isinstance(v, torch.Tensor) and v.dim() > 0)

    def edited(path, value):
        state = copy.deepcopy(good)
        *parents, last = path
        node = state
        for key in parents:
            node = node[key]
        node[last] = value(node[last]) if callable(value) else value
        return state

    bad = {
        "not a dict": (None, r"it is None, not a dict"),
        "no networks": ({k: v for k, v in good.items() if k != "networks"}, r"it has no 'networks' entry"),
        "weight shape": (edited(("networks", first_net, weight), lambda w: w.t().contiguous()),
                         rf"its {first_net}.{weight} has shape"),
        "NaN weight": (edited(("networks", first_net, weight), lambda w: torch.full_like(w, math.nan)),
                       rf"its {first_net}.{weight} holds NaN/inf values"),
        "trace shape": (edited(("optimizers", optimizer, "state", 0, trace), lambda z: z[:1]),
                        rf"its {optimizer} optimizer {trace} has shape"),
        "inf trace": (edited(("optimizers", optimizer, "state", 0, trace), lambda z: torch.full_like(z, math.inf)),
                      rf"its {optimizer} optimizer {trace} holds NaN/inf values"),
        "no parameter": (edited(("optimizers", optimizer, "state", 99), {}), r"an entry 99 for no parameter"),
        "step size": (edited(("optimizers", optimizer, "param_groups", 0, "lr"), 123.0), r"was made with lr=123.0"),
        "updates": (edited(("num_updates",), -1), r"num_updates is int -1, not a count"),
        "rng": (edited(("torch_generator",), torch.zeros(3, dtype=torch.uint8)), r"generator states cannot be"),
    }
    if algo == "stream_sarsa":  # an index the compiled kernels would read Q-values at
        bad["next action"] = (edited(("extra", "next_action"), 1000), r"pending next action is int 1000")
    if algo == "avg":
        bad["statistics"] = (edited(("extra", "td_scaler", "episode_return"), math.nan), r"TD-error statistics")
    target = build()
    before = target.state_dict()
    for name, (state, message) in bad.items():
        with pytest.raises(ConfigError, match=message):
            target.load_state_dict(state)
        assert _states_equal(target.state_dict(), before), name
    with pytest.raises(ConfigError, match="belongs to algorithm 'other'"):
        target.load_state_dict({**good, "algo": "other"})
    target.load_state_dict(good)
    assert _states_equal(target.state_dict(), good)

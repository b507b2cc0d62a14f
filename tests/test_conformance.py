"""What every registered algorithm must do, checked for each one the registry lists (built-in,
installed plugins) and for the example plugin (examples/expected_sarsa). A new algorithm is
covered by registering it: nothing here names one.

For each algorithm and each action space it declares: act and update, refusing the spaces it does
not declare; its state_dict round trip (through ``torch.load(weights_only=True)``); a run
stopped by a signal and resumed equals the uninterrupted run; lock-step equality of the fast
path with the autograd path where the fast path runs it; eval and export (or their refusal for a
prediction algorithm).
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from streamx.agents import make_agent
from streamx.agents.base import action_space_kind
from streamx.checkpoint import load_checkpoint
from streamx.errors import ConfigError
from streamx.registry import algorithm_class, algorithm_names, register, unregister
from streamx.run import checkpoint_paths, resolve_config, resume, train

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "expected_sarsa"
PLUGIN = "stream_expected_sarsa"
ALGORITHMS = [*algorithm_names(), *([PLUGIN] if PLUGIN not in algorithm_names() else [])]

# One small environment per kind of action space (the CartPole stream has no actions for "none").
ENVS = {"discrete": "CartPole-v1", "box": "Pendulum-v1", "none": "CartPole-v1"}
SPACES = {"discrete": gym.spaces.Discrete(3), "box": gym.spaces.Box(-2.0, 2.0, (2,), np.float32), "none": None,
          "other": gym.spaces.MultiDiscrete([2, 3])}
SMALL = {"hidden_sizes": [16, 16], "max_episode_steps": 100}


@pytest.fixture
def algorithm(request: pytest.FixtureRequest) -> str:
    """The algorithm's name, with the example plugin registered for the test when it is the one."""
    name: str = request.param
    if name == PLUGIN and PLUGIN not in algorithm_names():
        sys.path.insert(0, str(EXAMPLES))
        from expected_sarsa import StreamExpectedSARSA

        register(StreamExpectedSARSA)
        request.addfinalizer(lambda: (unregister(PLUGIN), sys.path.remove(str(EXAMPLES))))
    return name


def _cases(spaces: tuple[str, ...] = ("discrete", "box", "none")) -> list[Any]:
    """(algorithm, action-space kind) for every supported kind; the plugin's class is read later."""
    cases = []
    for name in ALGORITHMS:
        kinds = ("discrete",) if name == PLUGIN else algorithm_class(name).action_spaces
        cases += [pytest.param(name, kind, id=f"{name}-{kind}") for kind in kinds if kind in spaces]
    return cases


def _config(algo: str, kind: str, tmp_path: Path, **overrides: Any) -> Any:
    return resolve_config(algo, ENVS[kind], overrides={**SMALL, "progress": False, "run_dir": str(tmp_path / "run"),
                                                       **overrides})


def _transitions(kind: str, steps: int, seed: int = 0) -> tuple[gym.spaces.Box, Any, list[tuple]]:
    """A seeded random stream of 4-d observations for a space of ``kind``."""
    rng = np.random.default_rng(seed)
    space = SPACES[kind]
    if space is not None:
        space.seed(seed)
    stream, obs = [], rng.normal(size=4).astype(np.float32)
    for t in range(steps):
        next_obs = rng.normal(size=4).astype(np.float32)
        action = None if space is None else space.sample()
        end = (t + 1) % 25 == 0
        stream.append((obs, action, float(rng.normal()), next_obs, end, False))
        obs = rng.normal(size=4).astype(np.float32) if end else next_obs
    return gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), space, stream


@pytest.mark.parametrize(("algorithm", "kind"), _cases(), indirect=["algorithm"])
def test_act_and_update_on_each_declared_action_space(algorithm, kind):
    observation_space, action_space, stream = _transitions(kind, 60)
    torch.manual_seed(0)
    agent = make_agent(algorithm, observation_space, action_space, hidden_sizes=[16, 16])
    assert kind in agent.action_spaces and agent.algo == algorithm
    for obs, action, reward, next_obs, terminated, truncated in stream:
        taken = agent.act(obs)
        if kind == "discrete":
            assert action_space.contains(taken)
        elif kind == "box":  # a Gaussian's action may leave the box: the env's ClipAction wrapper clips it
            assert np.shape(taken) == action_space.shape and np.isfinite(taken).all()
        if action_space is not None:
            action = taken
        metrics = agent.update(obs, action, reward, next_obs, terminated, truncated)
        assert {"td_error", "effective_step_size", "trace_norm", *agent.extra_metrics} <= set(metrics)
        assert all(np.isfinite(value) for value in metrics.values())
    assert agent.num_updates == len(stream)


@pytest.mark.parametrize("algorithm", ALGORITHMS, indirect=True)
def test_an_undeclared_action_space_is_refused_with_the_algorithms_that_fit(algorithm):
    cls = algorithm_class(algorithm)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    refused = [kind for kind in SPACES if kind not in cls.action_spaces]
    for kind in refused:
        with pytest.raises(ConfigError, match=rf"{algorithm} supports .* action spaces, but .*"):
            make_agent(algorithm, observation_space, SPACES[kind])
    assert refused or cls.action_spaces == ("discrete", "box", "none", "other")


@pytest.mark.parametrize(("algorithm", "kind"), _cases(), indirect=["algorithm"])
def test_state_dict_round_trip_continues_identically(algorithm, kind):
    observation_space, action_space, stream = _transitions(kind, 80, seed=1)
    torch.manual_seed(0)
    agent = make_agent(algorithm, observation_space, action_space, hidden_sizes=[16, 16])
    for obs, action, reward, next_obs, terminated, truncated in stream[:40]:
        taken = agent.act(obs)
        agent.update(obs, taken if agent.acting_network is not None else action, reward, next_obs, terminated,
                     truncated)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # other initial weights: everything must come from the state
    copy = make_agent(algorithm, observation_space, action_space, hidden_sizes=[16, 16])
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    # a prediction algorithm's behaviour draws from the action space's own RNG (saved with the env)
    acts = agent.acting_network is not None
    for obs, action, reward, next_obs, terminated, truncated in stream[40:]:
        if acts:
            taken, taken_by_copy = agent.act(obs), copy.act(obs)
            np.testing.assert_array_equal(np.asarray(taken), np.asarray(taken_by_copy))
        used = taken if acts else action
        assert agent.update(obs, used, reward, next_obs, terminated, truncated) == \
            copy.update(obs, used, reward, next_obs, terminated, truncated)
    for name, network in agent.networks.items():
        for key, value in network.state_dict().items():
            assert torch.equal(value, copy.networks[name].state_dict()[key]), (name, key)


class _SignalAt(gym.Wrapper):
    """Sends SIGTERM to this process from inside env step ``at_step`` (counted across resumes)."""

    def __init__(self, env: gym.Env, at_step: int, counter: dict[str, int]):
        super().__init__(env)
        self.at_step, self.counter = at_step, counter

    def step(self, action: Any) -> Any:
        self.counter["steps"] += 1
        if self.counter["steps"] == self.at_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.env.step(action)


@pytest.mark.parametrize(("algorithm", "kind"), _cases(("discrete", "box")), indirect=["algorithm"])
def test_a_run_stopped_by_a_signal_and_resumed_equals_the_uninterrupted_run(algorithm, kind, tmp_path,
                                                                           monkeypatch):
    from streamx import envs

    steps = 700
    full = train(_config(algorithm, kind, tmp_path / "full", total_steps=steps, checkpoint_interval=250))
    original, counter = envs._make_raw, {"steps": 0}
    monkeypatch.setattr(envs, "_make_raw", lambda config, **kw: _SignalAt(original(config, **kw), 333, counter))
    config = _config(algorithm, kind, tmp_path / "stopped", total_steps=steps, checkpoint_interval=250)
    stopped = train(config)
    assert stopped.status == "interrupted" and stopped.steps == 333  # mid-episode, between checkpoints
    resumed = resume(config.run_dir)
    assert resumed.status == "finished" and resumed.steps == steps
    assert resumed.episode_returns == full.episode_returns and resumed.episode_lengths == full.episode_lengths
    final = load_checkpoint(checkpoint_paths(Path(config.run_dir))[-1])["agent"]["networks"]
    reference = load_checkpoint(checkpoint_paths(full.run_dir)[-1])["agent"]["networks"]
    for name in reference:
        for key, value in reference[name].items():
            assert torch.equal(value, final[name][key]), (name, key)


@pytest.mark.parametrize(("algorithm", "kind"), _cases(), indirect=["algorithm"])
def test_the_fast_path_matches_autograd_in_lock_step_where_it_runs(algorithm, kind):
    pytest.importorskip("numba", reason="the fast path needs numba")
    from test_fast import _lockstep

    from streamx.config import Config
    from streamx.fast import fast_path_supported

    observation_space, action_space, stream = _transitions(kind, 150, seed=2)
    supported, reason = fast_path_supported(Config(algo=algorithm), observation_space, action_space)
    if not supported:  # the algorithm runs on autograd under fast_path=auto, and fast_path=on says why
        torch.manual_seed(0)
        assert type(make_agent(algorithm, observation_space, action_space)) is algorithm_class(algorithm)
        with pytest.raises(ConfigError, match=re.escape(f"fast_path=on, but {reason}")):
            make_agent(algorithm, observation_space, action_space, fast_path="on")
        return
    if action_space is not None:  # the agent's own actions (ε-greedy draws need not be greedy)
        torch.manual_seed(0)
        actor = make_agent(algorithm, observation_space, action_space, hidden_sizes=[32, 32], fast_path="off")
        stream = [(o, actor.act(o), r, n, te, tr) for o, _, r, n, te, tr in stream]
    _lockstep(algorithm, observation_space, action_space, stream)


@pytest.mark.parametrize(("algorithm", "kind"), _cases(("discrete", "box")), indirect=["algorithm"])
def test_eval_and_export_act_as_the_agent_does(algorithm, kind, tmp_path):
    from streamx.evaluate import Policy, evaluate, export_policy

    config = _config(algorithm, kind, tmp_path, total_steps=1200)
    train(config)
    run_dir = Path(config.run_dir)
    cls = algorithm_class(algorithm)
    if cls.acting_network is None:
        with pytest.raises(ConfigError, match="learns predictions, not a policy"):
            evaluate(run_dir, episodes=1)
        with pytest.raises(ConfigError, match="learns predictions, not a policy"):
            export_policy(run_dir)
        return
    result = evaluate(run_dir, episodes=2)
    assert len(result["returns"]) == 2 and result["policy"] == cls.policy_description
    assert json.loads((run_dir / "eval.json").read_text())["returns"] == result["returns"]
    policy = Policy.load(export_policy(run_dir))
    payload = load_checkpoint(checkpoint_paths(run_dir)[-1])
    torch.manual_seed(0)
    env = gym.make(ENVS[kind])
    agent = make_agent(algorithm, policy._agent.observation_space, env.action_space, config, fast_path="off")
    agent.load_state_dict(payload["agent"])
    raw, _ = env.reset(seed=5)
    for t in range(20):
        expected = agent.act(policy.preprocess(raw, t), deterministic=True)
        np.testing.assert_array_equal(np.asarray(policy.act(raw, t)), np.asarray(expected))
        raw, _, terminated, truncated, _ = env.step(expected)
        if terminated or truncated:
            break


def test_every_builtin_declares_what_the_registry_needs():
    for name in algorithm_names():
        cls = algorithm_class(name)
        assert cls.algo == name
        assert set(cls.action_spaces) <= {"discrete", "box", "none", "other"} and cls.action_spaces
        assert cls.acting_network is None or isinstance(cls.acting_network, str)
        from streamx.config import Config

        assert set(cls.config_fields) <= set(Config.__dataclass_fields__), name
        Config.from_dict({"algo": name, **cls.config_defaults})  # valid values
    assert action_space_kind(None) == "none"


def test_an_installed_plugin_is_found_through_its_entry_point_and_trains(tmp_path):
    """The example plugin as a separately installed package would be: its distribution metadata
    (with the entry point of examples/expected_sarsa/pyproject.toml) on the path, no streamx file edited."""
    import subprocess
    import tomllib

    project = tomllib.loads((EXAMPLES / "pyproject.toml").read_text())["project"]
    dist = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entry_points = project["entry-points"]["streamx.algorithms"]
    (dist / "entry_points.txt").write_text(
        "[streamx.algorithms]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(EXAMPLES)]),
           "MUJOCO_GL": "disable"}

    def streamx(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "streamx.cli", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=600)

    listed = streamx("algorithms")
    assert listed.returncode == 0 and f"{PLUGIN:<22} plugin expected_sarsa.StreamExpectedSARSA" in listed.stdout
    assert "fast path" in listed.stdout.splitlines()[-1]
    trained = streamx("train", PLUGIN, "--env", "CartPole-v1", "--steps", "1500", "--run-dir", "run", "progress=false",
                      "fast_path=on")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 1500
    assert streamx("eval", "run", "--episodes", "1").returncode == 0


def test_the_fast_path_composes_hook_only_subclasses_and_names_why_it_does_not_run_others():
    pytest.importorskip("numba", reason="the fast path needs numba")
    from streamx.agents import StreamQ, StreamSARSA
    from streamx.fast import fast_agent_class

    class NeverCutQ(StreamQ):  # hooks only: composed with the action-value fast core
        algo = "never_cut_q"

        def _cut_traces(self, action, q_values):
            return False

    class OwnUpdate(StreamSARSA):  # replaces the update itself: the fast core would skip it
        algo = "own_update"

        def _update(self, *args):
            return super()._update(*args)

    class TorchHooks(StreamQ):
        algo = "torch_hooks"
        numpy_hooks = False

    composed, _ = fast_agent_class(NeverCutQ, "mlp")
    assert composed is not None and issubclass(composed, NeverCutQ) and composed._cut_traces is NeverCutQ._cut_traces
    assert fast_agent_class(NeverCutQ, "mlp")[0] is composed  # built once
    assert fast_agent_class(NeverCutQ, "atari")[0] is not None
    cls, reason = fast_agent_class(OwnUpdate, "mlp")
    assert cls is None and "OwnUpdate overrides _update" in reason
    cls, reason = fast_agent_class(TorchHooks, "mlp")
    assert cls is None and "numpy_hooks = False" in reason
    register(NeverCutQ)
    try:
        space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        agent = make_agent("never_cut_q", space, gym.spaces.Discrete(2), hidden_sizes=[8])
        assert isinstance(agent, composed)
        obs = np.zeros(4, np.float32)
        agent.update(obs, 1, 1.0, obs, False, False)
    finally:
        unregister("never_cut_q")
    with pytest.raises(ConfigError, match="never_cut_q"):
        make_agent("never_cut_q", gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))


def test_register_refuses_a_taken_name_and_a_mismatched_algo():
    from streamx.agents import StreamQ

    class Impostor(StreamQ):
        algo = "stream_q"

    class Misnamed(StreamQ):
        algo = "one_name"

    with pytest.raises(ConfigError, match="taken"):
        register(Impostor)
    with pytest.raises(ConfigError, match="must equal its registered name"):
        register(Misnamed, "another_name")
    with pytest.raises(ConfigError, match="unknown algorithm 'stream_qq' \\(did you mean 'stream_q'\\?\\)"):
        algorithm_class("stream_qq")


def test_without_numba_every_algorithm_runs_on_autograd_and_fast_path_on_names_numba(tmp_path):
    """In a process where numba cannot be imported (as after `pip install streamx-rl` without it),
    building any agent never touches the fast path's modules; `streamx algorithms` says so."""
    import subprocess

    script = (
        "import sys, builtins\n"
        "real_import = builtins.__import__\n"
        "def no_numba(name, *args, **kwargs):\n"
        "    if name == 'numba' or name.startswith('numba.'):\n"
        "        raise ModuleNotFoundError(\"No module named 'numba'\")\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = no_numba\n"
        "import importlib.util\n"
        "find_spec = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'numba' else find_spec(name, *a)\n"
        "import gymnasium as gym, numpy as np\n"
        "from streamx import make_agent\n"
        "from streamx.errors import ConfigError\n"
        "from streamx.registry import algorithm_class, algorithm_names\n"
        "box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)\n"
        "obs = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)\n"
        "for name in algorithm_names():\n"
        "    space = gym.spaces.Discrete(2) if 'discrete' in algorithm_class(name).action_spaces else box\n"
        "    agent = make_agent(name, obs, space)\n"
        "    assert type(agent) is algorithm_class(name), (name, type(agent))\n"
        "try:\n"
        "    make_agent('stream_q', obs, gym.spaces.Discrete(2), fast_path='on')\n"
        "except ConfigError as exc:\n"
        "    assert 'numba is not installed' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('fast_path=on without numba was accepted')\n"
        "assert not any(m.startswith('streamx.fast.') for m in sys.modules), sorted(sys.modules)\n"
        "from streamx.cli import main\n"
        "main(['algorithms'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "autograd path (numba is not installed)" in done.stdout

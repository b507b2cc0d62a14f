"""What every stream-x agent shares: spaces, networks, optimizers, RNGs, state dicts.

An agent sees one transition at a time::

    action = agent.act(obs)
    next_obs, reward, terminated, truncated, info = env.step(action)
    metrics = agent.update(obs, action, reward, next_obs, terminated, truncated)

``update`` learns from the transition immediately and returns floats for logging
(``td_error``, ``effective_step_size``, ``trace_norm``, …). Nothing is stored.

``act``, ``update`` (and ``predict`` / ``q_values``) are defined here once: they check their
arguments with :mod:`streamx.validation` — exact observation shape, a valid action, finite
values — and only then call the algorithm's ``_act`` / ``_update``, which every agent (autograd
or fast path) implements on checked float32 arrays. A refused call raises
:class:`~streamx.errors.InputError` and changes nothing.
"""

from __future__ import annotations

import copy
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from streamx.checkpoint import rng_from_plain, rng_to_plain
from streamx.config import STREAM_X_FIELDS, Config
from streamx.errors import ConfigError, NonFiniteError, StreamxError
from streamx.nn import atari_net, init_network, minatar_net, mlp
from streamx.optim import AdaptiveObGD, ObGD, TracedSGD
from streamx.registry import algorithm_class, algorithm_names
from streamx.validation import FLOAT32_MAX, ArrayCheck, check_discrete_action, check_flag, check_reward, describe

__all__ = ["StreamAgent", "TraceOptimizer", "action_space_kind", "build_network", "td_target_mask"]

TraceOptimizer = ObGD | AdaptiveObGD | TracedSGD
"""The optimizers :meth:`StreamAgent._add_learner` builds: eligibility traces,
``step(td_error, reset=...)``, ``effective_step_size``, ``trace_norm`` and ``reset_traces``."""


def action_space_kind(action_space: gym.spaces.Space | None) -> str:
    """``"discrete"`` (a Discrete space), ``"box"`` (a 1-D Box), ``"none"`` (no actions: a data
    stream) or ``"other"``: the kinds an algorithm's ``action_spaces`` names."""
    if action_space is None:
        return "none"
    if isinstance(action_space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return "box"
    return "other"


# Bytes an agent holds per network parameter, generously: float32 weights, eligibility trace and
# gradient, and the fast path's flat copies of weights and trace.
_BYTES_PER_PARAMETER = 4 * 5


def _physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the platform does not tell."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def check_fits_in_memory(build: Callable[[], nn.Module], network: str, fix: str) -> None:
    """Refuse (ConfigError) networks that could not fit in this machine's memory — hidden sizes or
    observations far too large — before any of it is allocated: allocating them would fail or get
    the process killed. ``build`` is run on torch's meta device (shapes only, no storage);
    ``network`` describes what it builds and ``fix`` what to change."""
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build().parameters())
    memory = _physical_memory()
    needed = parameters * _BYTES_PER_PARAMETER
    if memory is not None and needed > memory:
        raise ConfigError(f"{network}: {parameters:,} parameters, so the agent would need ≈ {_size_text(needed)}, "
                          f"more than this machine's {_size_text(memory)}: {fix}")


def _size_text(size: float) -> str:
    """5.31e6 → '5.31 MB', 2.5e10 → '25 GB', 1.4e17 → '140,000 TB'."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{size:.0f} B"


def _check_network_fits(observation_space: gym.spaces.Space, out_features: int | None, config: Config) -> None:
    shape = observation_space.shape or ()
    if len(shape) == 1:
        network = f"an MLP for observations of shape {shape} with hidden_sizes={config.hidden_sizes}"
        fix = ("use smaller hidden_sizes (the paper's are 32,32 on classic control and 128,128 on MuJoCo and DM "
               "Control) or smaller observations")
    else:
        network = f"the conv net for observations of shape {shape}"
        fix = "downsample the observations (the conv nets are the paper's; hidden_sizes does not change them)"
    check_fits_in_memory(lambda: build_network(observation_space, out_features, config, initialize=False),
                         network, fix)


def saved_tensor_problem(value: Any, shape: tuple[int, ...], name: str) -> str | None:
    """What is wrong with a saved tensor that should have ``shape`` and finite values, or None."""
    if not isinstance(value, Tensor):
        return f"its {name} is {describe(value)}, not a tensor"
    if tuple(value.shape) != shape:
        return f"its {name} has shape {tuple(value.shape)}, this agent's {shape}"
    if value.is_complex() or value.dtype == torch.bool:
        return f"its {name} has dtype {value.dtype}, not real numbers"
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        return f"its {name} holds NaN/inf values"
    return None


def build_network(observation_space: gym.spaces.Space, out_features: int | None, config: Config,
                  initialize: bool = True) -> nn.Sequential:
    """The paper's network for this observation shape (PAPER §3), initialized per config.

    1-D observations get an MLP of ``config.hidden_sizes``; ``(C, 84, 84)`` images the Atari
    conv net; other ``(C, H, W)`` images the MinAtar conv net.
    """
    shape = observation_space.shape
    if shape is None:
        raise ConfigError(f"observation space {observation_space} has no shape; wrap the env to give Box observations")
    if initialize:  # first its size, from a copy that allocates nothing (torch's meta device)
        _check_network_fits(observation_space, out_features, config)
    if len(shape) == 1:
        net = mlp(shape[0], config.hidden_sizes, out_features, layer_norm=config.layer_norm)
    elif len(shape) == 3 and tuple(shape[1:]) == (84, 84):
        net = atari_net(shape, out_features, layer_norm=config.layer_norm)
    elif len(shape) == 3:
        net = minatar_net(shape, out_features, layer_norm=config.layer_norm)
    else:
        raise ConfigError(
            f"no standard network for observations of shape {shape}; flatten them (1-D) or use "
            "channels-first images (C, H, W)"
        )
    if initialize:
        init_network(net, sparse=config.sparse_init, sparsity=config.sparsity)  # in place
    return net


def td_target_mask(terminated: bool, truncated: bool, config: Config) -> float:
    """1.0 when the TD target bootstraps from ``s'``, else 0.0.

    Truncation counts as termination unless ``config.bootstrap_on_truncation`` (PAPER §1.7).
    """
    if terminated:
        return 0.0
    if truncated and not config.bootstrap_on_truncation:
        return 0.0
    return 1.0


_SPACE_NAMES = {"discrete": "Discrete", "box": "1-D Box", "none": "no (a data stream)"}


def space_names(kinds: tuple[str, ...]) -> str:
    """``("discrete", "box")`` → ``"Discrete or 1-D Box"``."""
    return " or ".join(_SPACE_NAMES.get(kind, kind) for kind in kinds)


def _alternatives(kind: str) -> str:
    """What to do about an action space of this kind: the registered algorithms that support it."""
    names = []
    for name in algorithm_names():
        try:
            if kind in algorithm_class(name).action_spaces:
                names.append(name)
        except ConfigError:  # a plugin that cannot be loaded here
            continue
    if not names:
        return "wrap the environment to give Discrete or 1-D Box actions"
    return f"use an algorithm that supports it: {', '.join(names)}"


class StreamAgent(ABC):
    """Base class: holds the config, the agent's own RNGs and its (network, optimizer) pairs.

    Subclasses build their networks in ``__init__`` and register them with
    :meth:`_add_learner`; ``state_dict`` then covers everything needed to continue.
    """

    # What the rest of streamx reads from an algorithm's class (streamx.registry):
    algo: ClassVar[str] = ""
    """The algorithm's name: its key in the registry and its name on the command line."""
    extra_metrics: ClassVar[tuple[str, ...]] = ()
    """Keys ``update`` returns beyond td_error/effective_step_size/trace_norm (logged as means)."""
    acting_network: ClassVar[str | None] = None
    """The network (a key of :attr:`networks`) that chooses the actions: what ``streamx export``
    writes. None for a prediction algorithm (nothing to evaluate or export)."""
    action_spaces: ClassVar[tuple[str, ...]] = ("discrete", "box")
    """The action spaces it supports, as :func:`action_space_kind` names them."""
    config_fields: ClassVar[tuple[str, ...]] = STREAM_X_FIELDS
    """The :class:`~streamx.config.Config` fields the agent reads (beyond the environment's and the
    loop's). The others are left out of its runs' identity in sweeps."""
    config_defaults: ClassVar[dict[str, Any]] = {}
    """Config values of this algorithm, applied over the environment suite's defaults and under
    the suite's values for this algorithm, presets and overrides."""
    policy_description: ClassVar[str] = "the most likely action"
    """What a deterministic ``act`` returns (``streamx eval`` records it)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        kind = action_space_kind(action_space)
        if kind not in self.action_spaces:
            raise ConfigError(
                f"{self.algo} supports {space_names(self.action_spaces)} action spaces, but this "
                f"environment's is {action_space}; {_alternatives(kind)}")
        self.config = config
        self.observation_space = observation_space
        self.action_space = action_space
        self.num_updates = 0
        # The agent's own generators make its randomness independent of global state.
        self.torch_generator = torch.Generator().manual_seed(config.seed)
        self.np_random = np.random.default_rng(config.seed)
        self._networks: dict[str, nn.Module] = {}
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        # The boundary checks (streamx.validation), built once: the per-call cost is a shape
        # comparison and one dot product per array.
        self._check_obs = ArrayCheck(tuple(getattr(observation_space, "shape", None) or ()), self.algo,
                                     " (the observation space's)")
        self._check_action_vector = (ArrayCheck(action_space.shape, self.algo, " (the action space's)")
                                     if isinstance(action_space, gym.spaces.Box) else None)
        self._num_actions = int(action_space.n) if isinstance(action_space, gym.spaces.Discrete) else None

    # -- construction helpers --------------------------------------------------------------
    def _add_learner(self, name: str, network: nn.Module, kappa: float) -> TraceOptimizer:
        optimizer = self._make_optimizer(network.parameters(), kappa)
        self._networks[name] = network
        self._optimizers[name] = optimizer
        return optimizer

    def _make_optimizer(self, params: Iterable[Tensor], kappa: float) -> TraceOptimizer:
        c = self.config
        if c.optimizer == "obgd":
            return ObGD(params, lr=c.lr, gamma=c.gamma, lamda=c.lamda, kappa=kappa)
        if c.optimizer == "adaptive_obgd":
            return AdaptiveObGD(params, lr=c.lr, gamma=c.gamma, lamda=c.lamda, kappa=kappa,
                                beta2=c.beta2, eps=c.adaptive_eps)
        return TracedSGD(params, lr=c.lr, gamma=c.gamma, lamda=c.lamda)

    def _check_finite(self, td_error: SupportsFloat) -> None:
        """Refuse an update whose TD error is NaN/inf, before it reaches the weights."""
        if not math.isfinite(float(td_error)):
            raise NonFiniteError(
                f"{self.algo}: non-finite TD error ({float(td_error)}) at update {self.num_updates + 1}; "
                "the weights were left as they were — lower lr or check the environment's rewards"
            )

    @staticmethod
    def _step_metrics(td_error: Tensor, optimizer: TraceOptimizer, prefix: str = "") -> dict[str, float]:
        """The TD error and the optimizer's effective step size and trace norm, as floats."""
        metrics = {} if prefix else {"td_error": float(td_error)}
        metrics[f"{prefix}effective_step_size"] = float(optimizer.effective_step_size)
        metrics[f"{prefix}trace_norm"] = float(optimizer.trace_norm)
        return metrics

    @staticmethod
    def _as_batch(*observations: Any) -> Tensor:
        """Stack observations into one float32 batch (s and s' go through a net together)."""
        return torch.as_tensor(np.stack(observations), dtype=torch.float32)

    # -- the interface: checked here, computed by the algorithm --------------------------
    def act(self, obs: Any, deterministic: bool = False) -> Any:
        """The action to take in ``obs`` (greedy / mean action when ``deterministic``).

        ``obs`` must have exactly the observation space's shape (one observation, not a batch)
        and finite values; otherwise :class:`~streamx.errors.InputError`, and nothing changes."""
        return self._act(self._check_obs(obs, "obs"), deterministic)

    def update(self, obs: Any, action: Any, reward: float, next_obs: Any, terminated: bool,
               truncated: bool) -> dict[str, float]:
        """Learn from one transition; return logging metrics as floats.

        Every argument is checked first (shapes, a valid finite action, a finite reward, bool
        flags); a refused transition raises :class:`~streamx.errors.InputError` and changes
        nothing, as does a non-finite TD error (:class:`~streamx.errors.NonFiniteError`)."""
        check, who = self._check_obs, self.algo
        # the common case inline (an int action of a Discrete space, a float reward, bool flags);
        # anything else through the full checks
        n = self._num_actions
        if not (n is not None and type(action) is int and 0 <= action < n):
            action = self._check_action(action)
        if not (type(reward) is float and -FLOAT32_MAX <= reward <= FLOAT32_MAX):  # False for NaN and ±inf
            reward = check_reward(reward, who)
        if terminated is not True and terminated is not False:
            terminated = check_flag(terminated, "terminated", who)
        if truncated is not True and truncated is not False:
            truncated = check_flag(truncated, "truncated", who)
        return self._update(check(obs, "obs"), action, reward, check(next_obs, "next_obs"), terminated, truncated)

    def _check_action(self, action: Any) -> Any:
        """The action as the algorithm uses it: an index of a Discrete space, or a float32
        vector of a Box space's shape with finite values."""
        if self._num_actions is not None:
            return check_discrete_action(action, self._num_actions, self.algo)
        if self._check_action_vector is not None:
            return self._check_action_vector(action, "action")
        return action  # no action space: the action is not used (stream_td on a data stream)

    @abstractmethod
    def _act(self, obs: np.ndarray, deterministic: bool) -> Any:
        """:meth:`act` on a checked observation (float32, the observation space's shape)."""

    @abstractmethod
    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        """:meth:`update` on checked arguments (``action``: an int index or a float32 vector)."""

    @property
    def networks(self) -> dict[str, nn.Module]:
        return dict(self._networks)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self._optimizers)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning: weights, optimizer state (traces), RNGs,
        counters. Plain tensors and Python containers only (``torch.load(weights_only=True)``)."""
        return {
            "algo": self.algo,
            "num_updates": self.num_updates,
            "networks": {name: net.state_dict() for name, net in self._networks.items()},
            "optimizers": {name: opt.state_dict() for name, opt in self._optimizers.items()},
            "torch_generator": self.torch_generator.get_state(),
            "np_random": rng_to_plain(self.np_random),
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from what :meth:`state_dict` returned. The whole state is checked first — the
        algorithm, every tensor's shape against this agent's networks and optimizers, finite
        values, the RNG states, the algorithm's own entries — and a state that does not fit is
        refused with a ConfigError that changes nothing."""
        if isinstance(state, Mapping) and "algo" in state and state["algo"] != self.algo:
            raise ConfigError(f"this state belongs to algorithm {state['algo']!r}, not {self.algo!r}; "
                              f"load it into a {state['algo']} agent")
        problem = self._state_problem(state)
        if problem is not None:
            raise ConfigError(f"{self.algo}: cannot load this state: {problem}; load what state_dict() returned for "
                              "an agent of the same algorithm, spaces and network settings")
        for name, net in self._networks.items():
            net.load_state_dict(state["networks"][name])
        for name, opt in self._optimizers.items():
            # torch keeps the given state tensors as they are: copy, so two agents never share traces
            opt.load_state_dict(copy.deepcopy(state["optimizers"][name]))
        self.num_updates = int(state["num_updates"])
        self.torch_generator.set_state(state["torch_generator"])
        rng_from_plain(self.np_random, state["np_random"])
        self._load_extra_state(state.get("extra", {}))

    def _state_problem(self, state: Any) -> str | None:
        """What keeps ``state`` from loading into this agent, or None (see :meth:`load_state_dict`)."""
        if not isinstance(state, Mapping):
            return f"it is {describe(state)}, not a dict"
        missing = [key for key in ("algo", "num_updates", "networks", "optimizers", "torch_generator", "np_random")
                   if key not in state]
        if missing:
            return f"it has no {', '.join(repr(k) for k in missing)} entr{'y' if len(missing) == 1 else 'ies'}"
        for name, net in self._networks.items():
            saved = state["networks"].get(name) if isinstance(state["networks"], Mapping) else None
            if not isinstance(saved, Mapping):
                return f"it has no weights of the {name}"
            ours = net.state_dict()
            if set(saved) != set(ours):
                return f"its {name} has the entries {sorted(saved)}, this agent's {sorted(ours)}"
            for key, tensor in ours.items():
                problem = saved_tensor_problem(saved[key], tuple(tensor.shape), f"{name}.{key}")
                if problem is not None:
                    return problem
        for name, opt in self._optimizers.items():
            saved = state["optimizers"].get(name) if isinstance(state["optimizers"], Mapping) else None
            if not isinstance(saved, Mapping) or not isinstance(saved.get("state"), Mapping) \
                    or not isinstance(saved.get("param_groups"), list):
                return f"it has no optimizer state of the {name}"
            groups = saved["param_groups"]
            if len(groups) != len(opt.param_groups) or not all(
                    isinstance(g, Mapping) and isinstance(g.get("params"), list)
                    and len(g["params"]) == len(o["params"]) for g, o in zip(groups, opt.param_groups, strict=False)):
                return f"its {name} optimizer has other parameter groups than this agent's"
            for group, ours in zip(groups, opt.param_groups, strict=True):
                differing = sorted(k for k in set(group) | set(ours) if k != "params" and group.get(k) != ours.get(k))
                if differing:
                    key = differing[0]
                    return (f"its {name} optimizer was made with {key}={group.get(key)!r}, this agent's is "
                            f"{ours.get(key)!r} (build the agent with the same settings)")
            params = [p for group in opt.param_groups for p in group["params"]]
            for index, entries in saved["state"].items():
                if not (isinstance(index, int) and 0 <= index < len(params)) or not isinstance(entries, Mapping):
                    return f"its {name} optimizer state has an entry {index!r} for no parameter of this agent"
                for key, value in entries.items():  # traces (Adam's moments) of the parameter's shape, or scalars
                    if isinstance(value, Tensor) and value.dim() > 0:
                        problem = saved_tensor_problem(value, tuple(params[index].shape), f"{name} optimizer {key}")
                        if problem is not None:
                            return problem
                    elif isinstance(value, bool) or not isinstance(value, Tensor | int | float):
                        return f"its {name} optimizer {key} is {describe(value)}, not a tensor or a number"
                    elif not math.isfinite(float(value)):
                        return f"its {name} optimizer {key} is not finite"
        updates = state["num_updates"]
        if isinstance(updates, bool) or not isinstance(updates, int | np.integer) or updates < 0:
            return f"num_updates is {describe(updates)}, not a count"
        try:  # on spare generators, so that a bad state changes nothing here
            torch.Generator().set_state(state["torch_generator"])
            rng_from_plain(copy.deepcopy(self.np_random), state["np_random"])
        except (RuntimeError, TypeError, ValueError, KeyError, AttributeError, StreamxError) as exc:
            return f"its random number generator states cannot be restored ({exc})"
        extra = state.get("extra", {})
        return self._extra_state_problem(extra) if isinstance(extra, Mapping) else "its 'extra' entry is not a dict"

    def _extra_state_problem(self, extra: Mapping[str, Any]) -> str | None:
        """What keeps the algorithm's own entries (:meth:`_extra_state`) from loading, or None."""
        return None

    def env_restarted(self) -> None:
        """The environment was reset although the learner's episode goes on: an Atari game that
        reached its frame cap under ``life_loss=continue``, where the learner never sees the
        truncation (PAPER §9). Nothing drawn from the old game's last observation is used in the
        new game (Stream SARSA drops its pending a'); the traces are kept, as the paper's loop
        keeps them."""

    def end_episode(self) -> None:
        """Forget everything tied to the current episode (eligibility traces), as at an episode
        end; used when an episode is abandoned, e.g. when a run resumes at a new episode."""
        for optimizer in self._optimizers.values():
            # _add_learner's optimizers; an agent with others (avg: Adam) overrides end_episode
            assert isinstance(optimizer, TraceOptimizer)
            optimizer.reset_traces()

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

"""The fast path: the stream-x agents on the paper's standard networks with per-step
overhead removed, chosen automatically (``fast_path=auto``; ``off`` forces autograd).

Per-step overhead dominates streaming RL (one batch-1 update per environment step). Two
mechanisms, each picked by measurement (docs/performance.md):

* MLPs and the MinAtar conv net: each act / update is ONE fused numba kernel over flat float32
  buffers (:mod:`streamx.fast.kernels`, agents in :mod:`streamx.fast.agents`);
* the Atari conv net, whose update is arithmetic-bound: one numba call per forward and per
  backward pass that calls torch's own MKL SGEMM for the matrix products
  (:mod:`streamx.fast.gemm`), or, where torch has no MKL, torch's kernels chained by hand for
  one sample; either way with the act's forward pass reused and the numba optimizer step
  (:mod:`streamx.fast.conv`).

The fast agents are subclasses of the autograd agents, match them in lock-step to float32
rounding (tests/test_fast.py) and keep their ``state_dict`` format. numba is optional:
without it, :func:`fast_path_supported` says so and the autograd agents are used.

    from streamx.fast import fast_path_supported, make_fast_agent
    ok, why = fast_path_supported(config, env.observation_space, env.action_space)
    agent = make_fast_agent("stream_ac", env.observation_space, env.action_space, config)

numba kernels are compiled on first use and cached on disk (``cache=True``): the first run in
a fresh environment compiles only what its network and algorithm need (≈6–10 s on a loaded
2-core machine, docs/performance.md; the Atari path only needs the small optimizer kernels),
later runs load the cache in ≈2 s.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch

from streamx.config import OPTIMIZERS, Config
from streamx.errors import ConfigError

if TYPE_CHECKING:
    from streamx.agents.base import StreamAgent

__all__ = ["fast_agent_class", "fast_path_supported", "is_atari_shape", "make_fast_agent", "numba_available"]


def numba_available() -> bool:
    """Whether numba can be imported (the fast path's only extra dependency)."""
    return importlib.util.find_spec("numba") is not None


def fast_path_supported(config: Config, observation_space: gym.spaces.Space,
                        action_space: gym.spaces.Space | None) -> tuple[bool, str]:
    """Whether the fast agents can run this configuration, and if not, why not.

    Supported: the algorithms whose class declares fast agents (``fast_agents``: the four
    stream-x algorithms) or that subclass an agent with a fast mixin only through its documented
    hooks (``fast_mixins`` / ``fast_hooks``: new value-based algorithms), with every optimizer
    (obgd, adaptive_obgd, sgd) and the standard MLP (1-D observations, any hidden sizes, with or
    without LayerNorm), the MinAtar conv net (channels-first images other than 84×84) or the
    Atari conv net (``(C, 84, 84)``), with float32 weights. Anything else runs on the autograd path.
    """
    from streamx.agents.base import action_space_kind, space_names
    from streamx.registry import algorithm_class

    cls = algorithm_class(config.algo)
    kind = action_space_kind(action_space)
    if kind not in cls.action_spaces:
        return False, f"{config.algo} supports {space_names(cls.action_spaces)} action spaces, not {action_space}"
    if not numba_available():  # before anything that imports the kernels
        return False, "numba is not installed (pip install numba)"
    shape = getattr(observation_space, "shape", None)
    network_kind = "atari" if is_atari_shape(shape) else "mlp"
    fast_class, reason = fast_agent_class(cls, network_kind)
    if fast_class is None:
        return False, reason
    if config.optimizer not in OPTIMIZERS:
        return False, f"no fast kernel for optimizer '{config.optimizer}'"
    if torch.get_default_dtype() != torch.float32:
        return False, f"the fast kernels are float32, but torch's default dtype is {torch.get_default_dtype()}"
    if shape is None or len(shape) not in (1, 3):
        return False, f"observations of shape {shape} have no standard network"
    if network_kind == "atari":
        from streamx.fast import gemm

        how = ("numba kernels calling torch's MKL SGEMM" if gemm.AVAILABLE
               else f"hand-chained torch kernels ({gemm.REASON})")
        return True, f"Atari conv net with a supported optimizer: {how} with the numba optimizer step apply"
    network = "MLP" if len(shape) == 1 else "MinAtar conv net"
    return True, f"{network} with a supported optimizer: fused numba kernels apply"


_COMPOSED: dict[tuple[type, str], type] = {}


def fast_agent_class(cls: type[StreamAgent], network_kind: str) -> tuple[type[StreamAgent] | None, str]:
    """The fast class for algorithm class ``cls`` on a network of kind ``"mlp"`` (MLP and
    MinAtar net) or ``"atari"``, or None and the reason there is none.

    A class that declares ``fast_agents`` itself gets the class named there. A subclass of an
    agent that declares ``fast_mixins`` gets a class composed of itself and that mixin, when
    every class between them defines only the documented hooks (``fast_hooks``; plus plain
    attributes) and ``numpy_hooks`` is true. Anything else: None (the autograd path)."""
    own = cls.__dict__.get("fast_agents")
    if own is not None and network_kind in own:
        return _load(own[network_kind]), "the algorithm's fast agent"
    if not getattr(cls, "numpy_hooks", True):
        return None, f"{cls.algo} keeps its hooks on torch tensors (numpy_hooks = False): the fast path passes arrays"
    for ancestor in cls.__mro__[1:]:
        mixins = ancestor.__dict__.get("fast_mixins")
        if mixins is None:
            continue
        if network_kind not in mixins:
            return None, f"{ancestor.__name__} has no fast mixin for the {network_kind} network"
        hooks = set(getattr(ancestor, "fast_hooks", ()))
        for klass in cls.__mro__[:cls.__mro__.index(ancestor)]:
            if "fast_agents" in klass.__dict__ and klass is not cls:
                continue  # a built-in algorithm, tested with its family's mixin
            extra = sorted(name for name, value in vars(klass).items()
                           if callable(value) and not name.startswith("__") and name not in hooks)
            if extra:
                return None, (f"{klass.__name__} overrides {', '.join(extra)}; the fast path runs subclasses of "
                              f"{ancestor.__name__} that define only {', '.join(sorted(hooks))}")
        key = (cls, network_kind)
        if key not in _COMPOSED:
            mixin = _load(mixins[network_kind])
            _COMPOSED[key] = type(f"Fast{cls.__name__}", (cls, mixin),
                                  {"__module__": cls.__module__,
                                   "__doc__": f"{cls.__name__} on the fast path ({mixin.__name__})."})
        return _COMPOSED[key], f"{cls.__name__}'s hooks on the fast core of {ancestor.__name__}"
    return None, f"no fast kernels for algorithm '{cls.algo}' ({cls.__name__}): it runs on the autograd path"


def _load(target: str) -> Any:
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name)


def is_atari_shape(shape: tuple[int, ...] | None) -> bool:
    """Whether observations of this shape get the Atari conv net (``(C, 84, 84)``, PAPER §3),
    which the fast path runs with :mod:`streamx.fast.conv` rather than the fused numba kernels
    of :mod:`streamx.fast.kernels`."""
    return shape is not None and len(shape) == 3 and tuple(shape[1:]) == (84, 84)


def make_fast_agent(algo: str, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                    config: Config | None = None, **overrides: Any) -> StreamAgent:
    """Build the fast agent for ``algo`` (same arguments as :func:`streamx.agents.make_agent`).

    Raises ConfigError, naming the reason, when :func:`fast_path_supported` says no.
    """
    base = config.to_dict() if config is not None else {}
    config = Config.from_dict({**base, **overrides, "algo": algo})
    supported, reason = fast_path_supported(config, observation_space, action_space)
    if not supported:
        raise ConfigError(f"the fast path cannot run this configuration: {reason}; use the autograd agent")
    from streamx.registry import algorithm_class

    network_kind = "atari" if is_atari_shape(getattr(observation_space, "shape", None)) else "mlp"
    fast_class, _ = fast_agent_class(algorithm_class(config.algo), network_kind)
    assert fast_class is not None  # fast_path_supported said yes
    return fast_class(observation_space, action_space, config)

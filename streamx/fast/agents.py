"""Fast stream-x agents: the autograd agents of ``streamx.agents`` with act/update run by the
fused numba kernels of :mod:`streamx.fast.kernels`.

Each ``Fast*`` class subclasses its autograd agent, so construction (sparse-initialized
networks drawn from the global torch RNG, the agent's RNGs, the ε schedule, Watkins' rule,
SARSA's next action, metric keys) is the same code, and so is the per-step randomness: ε-greedy
draws from ``np_random``, Gaussian noise from ``torch.randn(…, generator=torch_generator)`` and
categorical samples from ``torch.multinomial(…, generator=torch_generator)``, in the same order.
The same seed therefore gives the same episodes as the autograd agent, up to float32 rounding.

Weights and optimizer state live in flat float32 arrays that the torch objects SHARE: every
parameter's ``.data`` and every optimizer state tensor (``eligibility_trace``, AdaptiveObGD's
``second_moment`` and ``update_count``) is a view of them. So ``agent.q_network``,
``agent.optimizer.state``, ``state_dict()`` and checkpoints always show the current values, in
exactly the autograd agents' format, at no copying cost, and a checkpoint loads into either kind
of agent. (Editing the modules in place is seen by the kernels too; rebinding ``p.data`` to a
new tensor, or replacing optimizer state tensors, is not: call :meth:`sync_from_torch` after.)
Optimizer hyperparameters are read from the torch optimizer's parameter group at construction
and at every ``load_state_dict``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from streamx.agents.ac import CLAMP_EPS, CategoricalPolicy, GaussianPolicy, StreamAC
from streamx.agents.action_value import ActionValueAgent
from streamx.agents.base import StreamAgent, TraceOptimizer, td_target_mask
from streamx.agents.q import StreamQ
from streamx.agents.sarsa import StreamSARSA
from streamx.agents.td import StreamTD
from streamx.config import Config
from streamx.errors import ConfigError
from streamx.fast import kernels
from streamx.optim import AdaptiveObGD, ObGD, TracedSGD

__all__ = ["FastStreamAC", "FastStreamQ", "FastStreamSARSA", "FastStreamTD", "FlatNetwork", "WeightLayer"]

WeightLayer = nn.Linear | nn.Conv2d
"""The layers the fast path lays out in its flat buffers (every other layer has no parameters)."""


def _as_input(obs: np.ndarray) -> np.ndarray:
    """A 1-D view of a checked observation (C-contiguous float32 of the observation space's
    shape, from :mod:`streamx.validation`: the kernels rely on its exact size)."""
    return obs if obs.ndim == 1 else obs.reshape(-1)


def _trace_optimizer(optimizer: torch.optim.Optimizer) -> TraceOptimizer:
    """``optimizer``, when the kernels implement its rule (ObGD, AdaptiveObGD, traced SGD)."""
    if isinstance(optimizer, (AdaptiveObGD, ObGD, TracedSGD)):
        return optimizer
    raise ConfigError(f"the fast path has no kernel for optimizer {type(optimizer).__name__}; use fast_path=off")


def _optimizer_rule(optimizer: TraceOptimizer) -> int:
    if isinstance(optimizer, AdaptiveObGD):
        return kernels.ADAPTIVE_OBGD
    if isinstance(optimizer, ObGD):
        return kernels.OBGD
    return kernels.TRACED_SGD


def _bias(layer: WeightLayer) -> Tensor:
    """The layer's bias; the fast path's layers all have one."""
    if layer.bias is None:
        raise ConfigError("the fast path supports the paper's MLPs and conv nets (layers with biases) only; "
                          "use fast_path=off")
    return layer.bias


def _aligned_zeros(rows: int, columns: int) -> np.ndarray:
    """Zeros ``[rows, n]`` (float32) with ``n`` = ``columns`` rounded up to 16 and the array
    starting on a 64-byte cache line, so every row does too."""
    columns = -(-columns // 16) * 16
    raw = np.zeros(rows * columns + 16, dtype=np.float32)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start:start + rows * columns].reshape(rows, columns)


def _aligned_state(num_params: int) -> np.ndarray:
    """Zeros ``[STATE_ROWS, n]`` (float32) with ``n`` = ``num_params`` rounded up to 16 and the
    array starting on a 64-byte cache line, so every row does too: the kernels stream weights
    and trace side by side, and rows misaligned against each other split AVX loads across
    cache lines (measured: up to ≈20% slower on the MinAtar net, varying with where the
    allocator put the array). The padding stays zero: every kernel leaves zeros zero."""
    return _aligned_zeros(kernels.STATE_ROWS, num_params)


class FlatParameters:
    """One network's weights and optimizer state as flat float32 arrays, shared with the torch
    module and optimizer (see the module docstring); the optimizer step runs in numba.

    ``state`` rows are the kernels' ``WEIGHTS``, ``TRACE``, ``SECOND_MOMENT`` and ``DIRECTION``;
    parameters are laid out in ``module.parameters()`` order, each tensor row-major, in the
    first ``num_params`` columns (the rest is zero padding, see ``_aligned_state``).
    """

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if len(optimizer.param_groups) != 1:
            raise ConfigError("the fast path supports one parameter group per optimizer; use fast_path=off")
        self.module = module
        self.optimizer = _trace_optimizer(optimizer)
        self.parameters = list(module.parameters())
        self.rule = _optimizer_rule(self.optimizer)
        self.num_params = self._index_parameters()
        self.state = _aligned_state(self.num_params)
        self.settings = np.zeros(kernels.NUM_SETTINGS, dtype=np.float32)
        # 0-d arrays shared with the optimizer as its update count and its logged step size / norm
        self.update_count = np.zeros((), dtype=np.float32)  # AdaptiveObGD's t, float32 as in torch
        self.last_effective_step_size = np.zeros((), dtype=np.float32)
        self.last_trace_norm = np.zeros((), dtype=np.float32)

    def _check_layers(self, layers: Sequence[WeightLayer]) -> None:
        if sum(layer.weight.numel() + _bias(layer).numel() for layer in layers) != self.num_params:
            raise ConfigError("the fast path supports the paper's MLPs and conv nets (layers with biases) only; "
                              "use fast_path=off")

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # copy.deepcopy and pickle copy tensors and arrays separately: share them again
        self.__dict__.update(state)
        copied = self.state
        self.state = _aligned_state(self.num_params)
        self.state[...] = copied
        self._make_views()
        self.load_from_torch()

    def _index_parameters(self) -> int:
        """Offsets of the parameters in the flat rows (by ``id``, so redone after a copy);
        returns the total size."""
        self.offsets: dict[int, int] = {}
        total = 0
        for p in self.parameters:
            self.offsets[id(p)] = total
            total += p.numel()
        return total

    def _make_views(self) -> None:
        """Named numpy views of ``state`` (rebuilt after a copy)."""
        self._index_parameters()
        self.weights = self.state[kernels.WEIGHTS, :self.num_params]
        self.eligibility_trace = self.state[kernels.TRACE, :self.num_params]
        self.second_moment = self.state[kernels.SECOND_MOMENT, :self.num_params]

    def _tensor_views(self, row: int) -> list[torch.Tensor]:
        """Per parameter, a torch view of its slice of ``state[row]``, shaped like it."""
        views, start = [], 0
        for p in self.parameters:
            views.append(torch.from_numpy(self.state[row, start:start + p.numel()]).view(p.shape))
            start += p.numel()
        return views

    # -- per step --------------------------------------------------------------------------
    def next_bias_correction(self) -> np.float32:
        """AdaptiveObGD's ``1 − β₂ᵗ`` for the coming update t, in float32 as torch computes it
        (``1.0 − torch.pow(torch.tensor(β₂), t)``); 1 for the other rules."""
        if self.rule != kernels.ADAPTIVE_OBGD:
            return kernels.ONE
        return np.float32(kernels.ONE - self.settings[kernels.BETA2] ** self._next_update_count())

    def record_step(self, effective_step_size: float | np.float32, trace_norm: float | np.float32) -> None:
        """Book an update that went through (torch creates the optimizer state at the first)."""
        if self.rule == kernels.ADAPTIVE_OBGD:
            self.update_count[()] = self._next_update_count()
        self.last_effective_step_size[()] = effective_step_size
        self.last_trace_norm[()] = trace_norm
        if not self.has_optimizer_state:
            self._share_optimizer_state()

    def _next_update_count(self) -> np.float32:
        return np.float32(self.update_count + kernels.ONE)

    # -- sharing with the torch module and optimizer ---------------------------------------
    @torch.no_grad()
    def load_from_torch(self) -> None:
        """Take weights, optimizer state and hyperparameters from the torch objects, then make
        the torch objects views of the flat arrays again."""
        group = self.optimizer.param_groups[0]
        lr, kappa, gamma, lamda = group["lr"], group["kappa"], group["gamma"], group["lamda"]
        beta2, eps = group.get("beta2", 0.0), group.get("eps", 1.0)
        # Each setting is the Python-double expression the torch optimizer uses, rounded to
        # float32 as torch rounds a Python scalar in a float32 tensor operation.
        self.settings[kernels.LR] = lr
        self.settings[kernels.KAPPA] = kappa
        self.settings[kernels.LR_TIMES_KAPPA] = lr * kappa
        self.settings[kernels.TRACE_DECAY] = gamma * lamda
        self.settings[kernels.BETA2] = beta2
        self.settings[kernels.ONE_MINUS_BETA2] = 1.0 - beta2
        self.settings[kernels.EPS] = eps

        state = self.optimizer.state
        self.has_optimizer_state = any("eligibility_trace" in state[p] for p in self.parameters if p in state)
        first = state.get(self.parameters[0], {})
        self.update_count[()] = first["update_count"].item() if "update_count" in first else 0.0
        rows = ((kernels.TRACE, "eligibility_trace"), (kernels.SECOND_MOMENT, "second_moment"))
        for p, weights in zip(self.parameters, self._tensor_views(kernels.WEIGHTS)):
            if p.data.data_ptr() != weights.data_ptr():
                weights.copy_(p.detach())
                p.data = weights
        for row, key in rows:
            for p, view in zip(self.parameters, self._tensor_views(row)):
                saved = state.get(p, {})
                if key not in saved:
                    view.zero_()
                elif saved[key].data_ptr() != view.data_ptr():
                    view.copy_(saved[key])
        if self.has_optimizer_state:
            self._share_optimizer_state()
        self.optimizer._last_effective_step_size = torch.from_numpy(self.last_effective_step_size)
        self.optimizer._last_trace_norm = torch.from_numpy(self.last_trace_norm)

    def _share_optimizer_state(self) -> None:
        """Point the optimizer's state entries at the flat arrays (creating them, as torch's
        first step does)."""
        state = self.optimizer.state
        keys = [(kernels.TRACE, "eligibility_trace")]
        if self.rule == kernels.ADAPTIVE_OBGD:
            keys.append((kernels.SECOND_MOMENT, "second_moment"))
        for row, key in keys:
            for p, view in zip(self.parameters, self._tensor_views(row)):
                state[p][key] = view
        if self.rule == kernels.ADAPTIVE_OBGD:
            state[self.parameters[0]]["update_count"] = torch.from_numpy(self.update_count)
        self.has_optimizer_state = True

    def step(self, td_error: np.float32, reset: bool, trace_norm: np.float32) -> np.float32:
        """The optimizer step after a trace update whose ``Σ‖z‖₁`` is ``trace_norm``; books it
        and returns the effective step size α̂."""
        step_size = kernels.optimizer_step(self.state, self.rule, self.settings, td_error,
                                           self.next_bias_correction(), reset, trace_norm)
        self.record_step(step_size, trace_norm)
        return step_size


class FlatNetwork(FlatParameters):
    """A network laid out for the fused numba kernels: :class:`FlatParameters` plus the layer
    table and workspace of :mod:`streamx.fast.kernels`.

    ``hidden`` are the trunk's layers in order: Linear layers, optionally after one leading
    Conv2d (the MinAtar net, PAPER §3), each followed by the parameter-free LayerNorm over all
    its features when ``layer_norm`` and LeakyReLU (PAPER §1.4); ``heads`` the output Linear
    layers, all reading the last hidden activation. ``input_shape`` is the observation's
    shape. Every parameter of ``module`` must belong to one of these layers.
    """

    def __init__(self, module: nn.Module, hidden: list[WeightLayer], heads: list[nn.Linear], layer_norm: bool,
                 optimizer: torch.optim.Optimizer, input_shape: tuple[int, ...]) -> None:
        if not hidden:
            raise ConfigError("the fast path needs at least one hidden layer (hidden_sizes is empty)")
        if any(isinstance(layer, nn.Conv2d) for layer in hidden[1:] + heads):
            raise ConfigError("the numba kernels support a conv layer only as the first layer (the MinAtar net); "
                              "use fast_path=off")
        super().__init__(module, optimizer)
        self.num_hidden = len(hidden)
        self.layer_norm = bool(layer_norm)
        layers = hidden + heads
        self._check_layers(layers)

        table = np.zeros((len(layers), kernels.LAYER_COLUMNS), dtype=np.int64)
        shape = tuple(int(n) for n in input_shape)
        cursor = math.prod(shape)  # the input sits at offset 0 of each workspace row
        previous_at = 0
        for row, layer in enumerate(layers):
            table[row, kernels.W_AT] = self.offsets[id(layer.weight)]
            table[row, kernels.B_AT] = self.offsets[id(layer.bias)]
            table[row, kernels.N_IN] = math.prod(shape)
            if isinstance(layer, nn.Conv2d):
                out_shape: tuple[int, ...] = _conv_geometry(layer, shape, table[row])
            elif isinstance(layer, nn.Linear) and math.prod(shape) == layer.in_features:
                out_shape = (layer.out_features,)
            else:
                raise ConfigError(f"the fast path cannot run layer {layer} on inputs of shape {shape}; "
                                  "use fast_path=off")
            table[row, kernels.N_OUT] = math.prod(out_shape)
            table[row, kernels.IN_AT] = previous_at
            table[row, kernels.PRE_AT] = cursor
            cursor += math.prod(out_shape)
            if row < self.num_hidden:  # the next layer (for the last: every head) reads its activation
                table[row, kernels.ACT_AT] = cursor
                previous_at = cursor
                cursor += math.prod(out_shape)
                shape = out_shape
        self.layers = table
        # the kernels' compile-time switch: None (an MLP, no conv code compiled) or True (conv first)
        self.conv: bool | None = True if table[0, kernels.KIND] == kernels.CONV else None
        self.num_outputs = sum(head.out_features for head in heads)
        self.workspace = np.zeros((3, cursor), dtype=np.float32)
        self.input_size = math.prod(tuple(int(n) for n in input_shape))
        self._make_views()
        self.load_from_torch()

    def _make_views(self) -> None:
        super()._make_views()
        output_at = int(self.layers[self.num_hidden, kernels.PRE_AT])
        self.outputs = self.workspace[0, output_at:output_at + self.num_outputs]  # heads at s (row 0)
        self.next_outputs = self.workspace[1, output_at:output_at + self.num_outputs]  # heads at s' (row 1)


def _conv_geometry(conv: nn.Conv2d, shape: tuple[int, ...], row: np.ndarray) -> tuple[int, int, int]:
    """Fill a layer-table row with a Conv2d's geometry; return its output shape (C, H, W)."""
    kernel, stride = conv.kernel_size, conv.stride
    if (len(shape) != 3 or kernel[0] != kernel[1] or stride[0] != stride[1] or conv.padding not in (0, (0, 0))
            or conv.dilation != (1, 1) or conv.groups != 1 or shape[0] != conv.in_channels):
        raise ConfigError(f"the fast path supports square, unpadded, ungrouped convolutions only, not {conv}; "
                          "use fast_path=off")
    height = (shape[1] - kernel[0]) // stride[0] + 1
    width = (shape[2] - kernel[0]) // stride[0] + 1
    row[kernels.KIND] = kernels.CONV
    row[kernels.C_IN], row[kernels.H_IN], row[kernels.W_IN] = shape
    row[kernels.KERNEL], row[kernels.STRIDE] = kernel[0], stride[0]
    row[kernels.H_OUT], row[kernels.W_OUT] = height, width
    return conv.out_channels, height, width


def _weight_layers(module: nn.Module) -> list[WeightLayer]:
    """The Linear and Conv2d layers of a network, in order."""
    return [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _hidden_and_output(module: nn.Module) -> tuple[list[WeightLayer], list[nn.Linear]]:
    """The Linear and Conv2d layers of a network with one output layer: those before it, and
    ``[output]`` (a Linear, as every network of :mod:`streamx.nn` ends)."""
    layers = _weight_layers(module)
    hidden, output = layers[:-1], layers[-1:]
    heads = [layer for layer in output if isinstance(layer, nn.Linear)]
    if heads != output:
        raise ConfigError(f"the fast path needs a Linear output layer, not {output[0]}; use fast_path=off")
    return hidden, heads


def _policy_heads(actor: GaussianPolicy | CategoricalPolicy) -> list[nn.Linear]:
    """The actor's output layers on its trunk: [mean, std] (Gaussian) or [logits] (categorical)."""
    if isinstance(actor, GaussianPolicy):
        return [actor.mean_head, actor.std_head]
    return [actor.logits_head]


class _FastAgent(StreamAgent):
    """Flat-buffer bookkeeping shared by the fast agents (listed after the algorithm's class in
    each ``Fast*`` class, so the algorithm's own hooks run around the fast core)."""

    _flat: dict[str, FlatNetwork]

    def _build_flat_networks(self, layouts: dict[str, tuple[list[WeightLayer], list[nn.Linear]]]) -> None:
        shape = tuple(self.observation_space.shape or ())
        self._flat = {
            name: FlatNetwork(self._networks[name], hidden, heads, self.config.layer_norm, self._optimizers[name],
                              shape)
            for name, (hidden, heads) in layouts.items()
        }

    def sync_from_torch(self) -> None:
        """Re-share the flat arrays with the torch objects after parameters were rebound or
        optimizer state tensors replaced (``load_state_dict`` does this itself)."""
        for flat in self._flat.values():
            flat.load_from_torch()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.sync_from_torch()


# ==============================================================================================
# Stream TD(λ)
# ==============================================================================================

class FastStreamTD(StreamTD, _FastAgent):
    """:class:`~streamx.agents.td.StreamTD` with a fused update (PAPER §2)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        self._build_flat_networks({"value_network": _hidden_and_output(self.value_network)})
        self._value = self._flat["value_network"]

    def _predict(self, obs: np.ndarray) -> float:
        net = self._value
        x = _as_input(obs)
        kernels.forward_pair(net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace, x, x, False, True,
                             net.conv)
        return float(net.outputs[0])

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        net = self._value
        discount = np.float32(self.config.gamma * td_target_mask(terminated, truncated, self.config))
        td_error, step_size, trace_norm, value = kernels.value_update(
            net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace, _as_input(obs),
            _as_input(next_obs), np.float32(reward), discount, net.rule, net.settings,
            net.next_bias_correction(), bool(terminated or truncated), net.conv)
        self._check_finite(td_error)
        net.record_step(step_size, trace_norm)
        self.num_updates += 1
        # float() of what numba returns, a Python float already (mypy takes the kernels' np.float32)
        return {"td_error": float(td_error), "effective_step_size": float(step_size),
                "trace_norm": float(trace_norm), "prediction": float(value)}


# ==============================================================================================
# Stream Q(λ) and Stream SARSA(λ)
# ==============================================================================================

class _FastActionValue(ActionValueAgent, _FastAgent):
    """The fast core of the action-value agents: Q-values and the update through the kernels;
    the bootstrap value and the trace cut stay the algorithm's own hooks.

    ``act(s)`` leaves the forward pass of ``s`` in the workspace; ``update`` reuses it when the
    weights have not changed since (no ``load_state_dict`` or ``sync_from_torch`` in between)
    and the observation is the same, as Stream AC does. ``update``'s step is fused with the
    forward pass of s' under the new weights, which the next ``act(s')`` reuses likewise. An
    in-place edit of the torch module between ``act`` and ``update`` (or between ``update`` and
    the next ``act``) is therefore not seen by that pass; ``q_values`` always runs afresh."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        self._build_flat_networks({"q_network": _hidden_and_output(self.q_network)})
        self._q = self._flat["q_network"]
        self._forward_current = False  # workspace row 0 holds a pass with the current weights

    def sync_from_torch(self) -> None:
        super().sync_from_torch()
        self._forward_current = False

    def _q_values_array(self, obs: Any, reuse: bool = True) -> np.ndarray:
        """``Q(obs, ·)`` as a float32 view into the workspace (valid until the next forward);
        with ``reuse``, a pass of the same ``obs`` with the current weights is not repeated."""
        net = self._q
        x = _as_input(obs)
        kernels.forward_pair(net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace, x, x,
                             reuse and self._forward_current, True, net.conv)  # s only (one entry point for both)
        self._forward_current = True
        return net.outputs

    def _q_values(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._q_values_array(obs, reuse=False).copy())  # always a fresh pass

    def _act(self, obs: np.ndarray, deterministic: bool) -> int:
        q_values = self._q_values_array(obs)
        if deterministic:
            return int(q_values.argmax())
        return self._epsilon_greedy(q_values)

    def _update(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        episode_end = bool(terminated or truncated)
        q_values, next_q_values = self._forward_pair(obs, next_obs)
        bootstrap = td_target_mask(terminated, truncated, self.config)
        # The same float32 expression as ActionValueAgent.update; the hooks may draw a' (SARSA).
        target_value = (np.float32(self._bootstrap_value(next_q_values, not episode_end))
                        if bootstrap else kernels.ZERO)
        td_error = ((np.float32(reward) + np.float32(self.config.gamma * bootstrap) * target_value)
                    - q_values[action])
        reset = episode_end or self._cut_traces(action, q_values)
        self._check_finite(td_error)
        step_size, trace_norm = self._learn_output(action, td_error, reset)
        self.num_updates += 1
        return {"td_error": float(td_error), "effective_step_size": float(step_size),
                "trace_norm": float(trace_norm), "epsilon": self.epsilon}

    def _forward_pair(self, obs: Any, next_obs: Any) -> tuple[np.ndarray, np.ndarray]:
        """``Q(s, ·)`` and ``Q(s', ·)`` with the current weights (float32 views); the pass of s
        that ``act`` left in the workspace is reused when the weights have not changed since."""
        net = self._q
        kernels.forward_pair(net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace,
                             _as_input(obs), _as_input(next_obs), self._forward_current, False, net.conv)
        self._forward_current = False
        return net.outputs, net.next_outputs

    def _learn_output(self, index: int, td_error: np.float32, reset: bool) -> tuple[np.float32, np.float32]:
        """Trace of ∇Q(s, index) at the s of the last ``_forward_pair``, then the step fused
        with the forward pass of that pair's s' under the new weights, which the next ``act``
        on s' reuses; returns (α̂, Σ‖z‖₁)."""
        net = self._q
        step_size, trace_norm = kernels.learn_output(
            net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace, index, net.rule, net.settings,
            td_error, net.next_bias_correction(), reset, net.workspace[1, :net.input_size], net.conv)
        self._forward_current = True
        net.record_step(step_size, trace_norm)
        return step_size, trace_norm


class FastStreamQ(StreamQ, _FastActionValue):
    """:class:`~streamx.agents.q.StreamQ` (Watkins-style Q(λ)) with fused kernels (PAPER §2);
    an update is two kernel calls (``forward_pair``, then :func:`~streamx.fast.kernels.q_update`
    for δ, the trace cut, the trace and the step) with little Python between them."""

    def _update(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        net = self._q
        bootstrap = td_target_mask(terminated, truncated, self.config)
        kernels.forward_pair(net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace, _as_input(obs),
                             _as_input(next_obs), self._forward_current, False, net.conv)
        self._forward_current = False
        # The float32 expression of ActionValueAgent.update (discount rounded as torch rounds γ·mask)
        td_error, step_size, trace_norm, _ = kernels.q_update(
            net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace, action, np.float32(reward),
            np.float32(self.config.gamma * bootstrap), bootstrap != 0.0, bool(terminated or truncated), net.rule,
            net.settings, net.next_bias_correction(), net.workspace[1, :net.input_size], net.conv)
        self._check_finite(td_error)
        self._forward_current = True  # the step was fused with the pass of s' under the new weights
        net.record_step(step_size, trace_norm)
        self.num_updates += 1
        return {"td_error": float(td_error), "effective_step_size": float(step_size),
                "trace_norm": float(trace_norm), "epsilon": self.epsilon}


class FastStreamSARSA(StreamSARSA, _FastActionValue):
    """:class:`~streamx.agents.sarsa.StreamSARSA` with fused kernels (PAPER §2); its ``act``
    still hands out the pending next action first."""


# ==============================================================================================
# Stream AC(λ)
# ==============================================================================================

class FastStreamAC(StreamAC, _FastAgent):
    """:class:`~streamx.agents.ac.StreamAC` with one fused kernel per update (PAPER §2).

    ``act(s)`` leaves the actor's forward pass of ``s`` in the workspace; ``update`` reuses it
    when the weights have not changed since and the observation is the same."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        trunk = _weight_layers(self.actor.trunk)
        heads = _policy_heads(self.actor)
        self._build_flat_networks({"critic": _hidden_and_output(self.critic), "actor": (trunk, heads)})
        self._critic, self._actor = self._flat["critic"], self._flat["actor"]
        self._num_outputs = heads[0].out_features  # action dimension or number of actions
        size = 2 * self._num_outputs if self.continuous else self._num_outputs
        self._distribution = np.zeros(size, dtype=np.float32)  # [mean, std] or probabilities
        self._scratch = np.zeros(self._num_outputs, dtype=np.float64)  # log-probabilities
        self._no_action_vector = np.zeros(self._num_outputs, dtype=np.float32)
        self._actor_forward_current = False  # workspace row 0 holds a pass with the current weights
        self._entropy_coef = np.float32(config.entropy_coef)
        self._clamp_eps = np.float64(CLAMP_EPS if config.policy_prob_clamp else 0.0)
        self._gaussian = True if self.continuous else None  # None: the kernels skip compiling the Gaussian code

    def sync_from_torch(self) -> None:
        super().sync_from_torch()
        self._actor_forward_current = False

    def _act(self, obs: np.ndarray, deterministic: bool) -> Any:
        net = self._actor
        kernels.policy_distribution(net.state, net.layers, net.num_hidden, net.layer_norm, net.workspace,
                                    _as_input(obs), self._gaussian, self._actor_forward_current, self._distribution,
                                    net.conv)
        self._actor_forward_current = True
        n = self._num_outputs
        if self.continuous:
            mean, std = self._distribution[:n], self._distribution[n:]
            if deterministic:
                return mean.copy()
            noise = torch.randn((1, n), generator=self.torch_generator).numpy()[0]
            return mean + std * noise  # float32, in the order of GaussianPolicy.sample
        if deterministic:
            return int(net.outputs.argmax())
        return int(torch.multinomial(torch.from_numpy(self._distribution), 1, generator=self.torch_generator)[0])

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        critic, actor = self._critic, self._actor
        if self.continuous:  # a checked float32 vector of the action space's shape
            action_vector, action_index = action, 0
        else:  # a checked index
            action_vector, action_index = self._no_action_vector, action
        discount = np.float32(self.config.gamma * td_target_mask(terminated, truncated, self.config))
        td_error, critic_step, critic_norm, actor_step, actor_norm, entropy = kernels.actor_critic_update(
            critic.state, critic.layers, critic.workspace, actor.state, actor.layers, actor.workspace,
            critic.num_hidden, critic.layer_norm, _as_input(obs), _as_input(next_obs), self._gaussian,
            action_vector, action_index, np.float32(reward), discount, self._entropy_coef, self._clamp_eps,
            self._actor_forward_current, critic.rule, critic.settings, actor.settings,
            critic.next_bias_correction(), actor.next_bias_correction(), bool(terminated or truncated),
            self._scratch, critic.conv)
        self._actor_forward_current = False
        self._check_finite(td_error)
        critic.record_step(critic_step, critic_norm)
        actor.record_step(actor_step, actor_norm)
        self.num_updates += 1
        # float() of what numba returns, a Python float already (mypy takes the kernels' np.float32)
        return {"td_error": float(td_error), "effective_step_size": float(critic_step),
                "trace_norm": float(critic_norm), "policy_effective_step_size": float(actor_step),
                "policy_trace_norm": float(actor_norm), "entropy": float(entropy)}


"""The fast path for the Atari conv net (PAPER §3: Conv 32 8×8 s5 → Conv 64 4×4 s3 → Conv 64
3×3 s2 → FC 256), in two implementations with one interface:

* :class:`GemmConvNetwork` (used where torch exports MKL's ``sgemm_``: torch's Linux x86-64
  wheels): each forward pass and each backward pass is ONE numba call
  (:mod:`streamx.fast.gemm`) that calls SGEMM for the matrix products and runs im2row,
  LayerNorm, LeakyReLU, their backward, the trace update and ‖z‖₁ in compiled loops;
* :class:`TorchConvNetwork` (the fallback elsewhere): the same steps as hand-chained torch
  kernels (``addmm`` on im2col patches gathered by ``index_select``, ``native_layer_norm`` and
  its backward, …), ≈ 70 small calls per step.

Why not the numba kernels of :mod:`streamx.fast.kernels` alone: on the Atari net an update is
arithmetic-bound (≈10 M multiply-adds: two forward passes and one backward), and a plain numba
loop nest does that several times slower than MKL's SGEMM. What autograd adds on top of those
products is overhead both implementations remove:

* the forward pass of ``s`` that ``act`` already did is kept and reused by ``update`` (weights
  unchanged, same observation), so each step runs two forward passes (``s'`` with the old
  weights, ``s`` with the new ones at the next ``act``) instead of three, and the second
  reuses the first layer's patches of the first (they depend on the observation only);
* the backward pass is chained by hand for ONE sample (autograd differentiates the batch of
  s and s' whose second row has zero gradient), with no input gradient for the first conv
  and no graph bookkeeping;
* each parameter gradient is added straight into its slice of ONE flat trace, and the ObGD /
  AdaptiveObGD / traced-SGD step is the numba :func:`~streamx.fast.kernels.optimizer_step`
  over the flat arrays (no per-tensor loops).

Measured on the development machine (docs/performance.md), one process, Stream Q on Breakout:
act+update 0.57 ms with GemmConvNetwork, 1.6 ms with TorchConvNetwork.

The agents here subclass the autograd agents exactly as those in :mod:`streamx.fast.agents`
do, share memory with their modules and optimizer state, and keep their ``state_dict`` format.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamx.agents.ac import CLAMP_EPS, StreamAC
from streamx.agents.base import td_target_mask
from streamx.agents.q import StreamQ
from streamx.agents.td import StreamTD
from streamx.config import Config
from streamx.errors import ConfigError
from streamx.fast import gemm, kernels
from streamx.fast.agents import (
    FastStreamSARSA,
    FlatParameters,
    WeightLayer,
    _aligned_zeros,
    _bias,
    _conv_geometry,
    _FastActionValue,
    _FastAgent,
    _hidden_and_output,
    _policy_heads,
    _weight_layers,
)
from streamx.nn import LEAKY_RELU_SLOPE
from streamx.optim import l1_norm
from streamx.validation import ArrayCheck

__all__ = ["ConvNetwork", "GemmConvNetwork", "TorchConvNetwork", "conv_network_class"]

_LAYER_NORM_EPS = 1e-5  # FeatureLayerNorm's eps


class _KeptPassNetwork(FlatParameters):
    """A conv net (hidden Conv2d then Linear layers; Linear heads) that keeps one forward pass
    for the backward pass and drops it whenever the weights change (a step, or new weights from
    torch). Subclasses lay out their buffers, then call ``_make_views`` and ``load_from_torch``."""

    def __init__(self, module: nn.Module, hidden: list[WeightLayer], heads: list[nn.Linear], layer_norm: bool,
                 optimizer: torch.optim.Optimizer, input_shape: tuple[int, ...]) -> None:
        super().__init__(module, optimizer)
        self._check_layers([*hidden, *heads])
        _check_convolutions(hidden)
        if not hidden:
            raise ConfigError("the fast path needs at least one hidden layer (hidden_sizes is empty)")
        self.num_hidden = len(hidden)
        self.layer_norm = bool(layer_norm)
        self.input_shape = tuple(int(n) for n in input_shape)
        self.num_outputs = sum(head.out_features for head in heads)
        self.outputs = np.zeros(self.num_outputs, dtype=np.float32)  # heads at the kept input
        self._make_checks()

    def forget(self) -> None:
        raise NotImplementedError

    def _make_checks(self) -> None:
        # the public methods check what they are handed (the kernels behind them check nothing);
        # the agents, which checked their observations already, call the private ones
        who = type(self).__name__
        self._check_input = ArrayCheck((math.prod(self.input_shape),), who, " (one flat input)")
        self._check_gradient = ArrayCheck((self.num_outputs,), who, " (one value per output)")

    def forward(self, x: Any, keep: bool = True) -> np.ndarray:
        """The heads' outputs (float32, concatenated) for one flat input ``x`` (checked: finite,
        ``prod(input_shape)`` values); with ``keep``, the pass is kept for :meth:`accumulate_trace`
        and the outputs are :attr:`outputs`, else they are a new array."""
        return self._forward(self._check_input(x, "x"), keep)

    def forward_kept(self, x: Any) -> np.ndarray:
        """``forward(x, keep=True)``, or the kept pass when it is of ``x`` with the current weights."""
        return self._forward_kept(self._check_input(x, "x"))

    def holds(self, x: Any) -> bool:
        """Whether the kept forward pass is of exactly ``x`` with the current weights."""
        return self._holds(self._check_input(x, "x"))

    def accumulate_trace(self, output_gradient: Any) -> np.float32:
        """``z ← γλ z + ∇(output_gradient · outputs)`` at the kept input (PAPER §1.1); returns
        ``Σ‖z‖₁``. ``output_gradient``: one finite value per output."""
        return self._accumulate_trace(self._check_gradient(output_gradient, "output_gradient"))

    def _forward(self, x: np.ndarray, keep: bool) -> np.ndarray:
        raise NotImplementedError

    def _forward_kept(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _holds(self, x: np.ndarray) -> bool:
        raise NotImplementedError

    def _accumulate_trace(self, output_gradient: np.ndarray) -> np.float32:
        raise NotImplementedError

    def load_from_torch(self) -> None:
        super().load_from_torch()
        self.forget()

    def step(self, td_error: np.float32, reset: bool, trace_norm: np.float32) -> np.float32:
        step_size = super().step(td_error, reset, trace_norm)
        self.forget()
        return step_size


class GemmConvNetwork(_KeptPassNetwork):
    """A conv net (any stack of square, unpadded Conv2d layers, then Linear layers, each with
    LayerNorm over all its features and LeakyReLU; Linear heads) on flat buffers, run by the
    numba kernels of :mod:`streamx.fast.gemm` (one call per forward pass, one per backward
    pass, matrix products by torch's MKL SGEMM).

    Workspace rows 0 and 1 take turns holding the kept pass (the one :meth:`accumulate_trace`
    differentiates): the other row takes the passes with ``keep=False`` (s' of an update),
    and when ``act`` then asks for that same input with the new weights, the pass is redone
    in that row, keeping its input and first-layer patches, and that row becomes the kept one.
    """

    def __init__(self, module: nn.Module, hidden: list[WeightLayer], heads: list[nn.Linear], layer_norm: bool,
                 optimizer: torch.optim.Optimizer, input_shape: tuple[int, ...]) -> None:
        super().__init__(module, hidden, heads, layer_norm, optimizer, input_shape)
        self.layers, width = self._layer_table([*hidden, *heads])
        self.workspace = _aligned_zeros(3, width)
        self._row = 0  # the workspace row of the kept pass
        self._make_views()
        self.load_from_torch()

    def _layer_table(self, layers: list[WeightLayer]) -> tuple[np.ndarray, int]:
        """The kernels' layer table and the workspace width. Every block starts on a 64-byte
        boundary (the SGEMM operands)."""
        table = np.zeros((len(layers), gemm.LAYER_COLUMNS), dtype=np.int64)
        shape = self.input_shape
        cursor = 0

        def allocate(size: int) -> int:
            nonlocal cursor
            at = cursor
            cursor += -(-size // 16) * 16
            return at

        previous_at = allocate(math.prod(shape))  # the input sits at offset 0
        for row, layer in enumerate(layers):
            table[row, kernels.W_AT] = self.offsets[id(layer.weight)]
            table[row, kernels.B_AT] = self.offsets[id(layer.bias)]
            table[row, kernels.N_IN] = math.prod(shape)
            table[row, kernels.IN_AT] = previous_at
            if isinstance(layer, nn.Conv2d) and row < self.num_hidden:
                out_shape: tuple[int, ...] = _conv_geometry(layer, shape, table[row])
                table[row, gemm.FAN_IN] = layer.weight[0].numel()
                table[row, gemm.POSITIONS] = out_shape[1] * out_shape[2]
                table[row, gemm.PATCH_AT] = allocate(out_shape[1] * out_shape[2] * layer.weight[0].numel())
            elif isinstance(layer, nn.Linear) and math.prod(shape) == layer.in_features:
                out_shape = (layer.out_features,)
                table[row, kernels.KIND] = kernels.LINEAR
                table[row, gemm.FAN_IN] = layer.in_features
                table[row, gemm.POSITIONS] = 1
            else:
                raise ConfigError(f"the fast path cannot run layer {layer} on inputs of shape {shape}; "
                                  "use fast_path=off")
            table[row, kernels.N_OUT] = math.prod(out_shape)
            # the heads' outputs are contiguous: one block for all of them
            is_head = row >= self.num_hidden
            if not is_head or row == self.num_hidden:
                table[row, kernels.PRE_AT] = allocate(
                    self.num_outputs if is_head else math.prod(out_shape))
            else:
                table[row, kernels.PRE_AT] = table[row - 1, kernels.PRE_AT] + table[row - 1, kernels.N_OUT]
            if not is_head:  # the next layer (for the last: every head) reads its activation
                table[row, kernels.ACT_AT] = previous_at = allocate(math.prod(out_shape))
                shape = out_shape
        return table, cursor

    def _make_views(self) -> None:
        super()._make_views()
        output_at = int(self.layers[self.num_hidden, kernels.PRE_AT])
        self._rows = list(self.workspace)
        self._row_outputs = [row[output_at:output_at + self.num_outputs] for row in self._rows[:2]]
        self.forget()

    def forget(self) -> None:
        """Drop the kept forward pass (the weights changed)."""
        self._kept = False

    def _holds(self, x: np.ndarray) -> bool:
        """Whether the kept forward pass is of exactly ``x`` with the current weights."""
        return self._kept and np.array_equal(self._rows[self._row][:x.shape[0]], x)

    def _forward_kept(self, x: np.ndarray) -> np.ndarray:
        """The heads' outputs at ``x``, kept for the backward pass: the kept pass when it is of
        ``x`` with the current weights (``act`` ran it; ``update`` reuses it), else a new one."""
        self._row = gemm.forward_kept(self.state[kernels.WEIGHTS], self.layers, self.num_hidden, self.layer_norm,
                                      self.workspace, x, self._row, self._kept)
        self._kept = True
        self.outputs[:] = self._row_outputs[self._row]
        return self.outputs

    def _forward(self, x: np.ndarray, keep: bool = True) -> np.ndarray:
        """The heads' outputs (float32, concatenated) for one flat float32 input ``x``; with
        ``keep`` (:meth:`forward_kept`), the pass is kept for the backward pass and the outputs
        are :attr:`outputs`; without, they are a new array."""
        if keep:
            return self._forward_kept(x)
        row = 1 - self._row
        gemm.forward(self.state[kernels.WEIGHTS], self.layers, self.num_hidden, self.layer_norm, self._rows[row], x,
                     False)
        return self._row_outputs[row].copy()

    def _accumulate_trace(self, output_gradient: np.ndarray) -> np.float32:
        """``z ← γλ z + ∇(output_gradient · outputs)`` at the kept input (PAPER §1.1);
        returns ``Σ‖z‖₁``."""
        if not self._kept:
            raise RuntimeError("accumulate_trace needs a kept forward pass (forward(x, keep=True)) first")
        return gemm.backward(self.state[kernels.WEIGHTS], self.state[kernels.TRACE], self.layers, self.num_hidden,
                             self.layer_norm, self._rows[self._row], self._rows[2],
                             np.ascontiguousarray(output_gradient, dtype=np.float32),
                             self.settings[kernels.TRACE_DECAY])


class TorchConvNetwork(_KeptPassNetwork):
    """A conv net (any stack of square, unpadded Conv2d layers, then Linear layers, each with
    LayerNorm over all its features and LeakyReLU; Linear heads) on flat buffers, run by torch
    kernels for one sample at a time (the fallback where :class:`GemmConvNetwork` cannot run).

    ``forward(x, keep=True)`` keeps the activations of ``x`` for :meth:`accumulate_trace`
    until the weights change (:meth:`step`, :meth:`load_from_torch`).
    """

    def __init__(self, module: nn.Module, hidden: list[WeightLayer], heads: list[nn.Linear], layer_norm: bool,
                 optimizer: torch.optim.Optimizer, input_shape: tuple[int, ...]) -> None:
        super().__init__(module, hidden, heads, layer_norm, optimizer, input_shape)
        self.hidden = hidden
        self.heads = heads
        self._saved: list[tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]] = []
        self._saved_features: Tensor | None = None
        self._saved_input: np.ndarray | None = None
        self._make_views()
        self.load_from_torch()

    def _make_views(self) -> None:
        super()._make_views()
        weights, trace = torch.from_numpy(self.state[kernels.WEIGHTS]), torch.from_numpy(self.state[kernels.TRACE])
        self._trace = trace
        self._trace_tensors = self._tensor_views(kernels.TRACE)

        def views(layer: WeightLayer) -> tuple[Tensor, Tensor, Tensor, Tensor]:
            """Weight as [out, fan_in], bias; their traces likewise (views of the flat rows)."""
            w_at, b_at = self.offsets[id(layer.weight)], self.offsets[id(layer.bias)]
            w_end, b_end = w_at + layer.weight.numel(), b_at + _bias(layer).numel()
            shape = (layer.weight.shape[0], layer.weight[0].numel())
            return (weights[w_at:w_end].view(shape), weights[b_at:b_end], trace[w_at:w_end].view(shape),
                    trace[b_at:b_end])

        self._hidden_views: list[tuple[Tensor | None, Tensor, Tensor, Tensor, Tensor]] = []
        shape = self.input_shape
        for layer in self.hidden:
            patch_index = None
            if isinstance(layer, nn.Conv2d):
                patch_index, shape = _patch_index(shape, layer)
            else:
                shape = (layer.out_features,)
            self._hidden_views.append((patch_index, *views(layer)))
        self._head_views = [views(head) for head in self.heads]
        # im2col buffers for the kept pass (s) and the other one (s'), allocated once: fresh
        # allocations above malloc's mmap threshold (128 KiB) page-fault on every step
        self._patches = [[torch.empty(index.shape) if index is not None else None
                          for index, *_ in self._hidden_views] for _ in range(2)]
        self._bias_columns = [bias[:, None] for _, _, bias, _, _ in self._hidden_views]
        self._other_input: np.ndarray | None = None  # the input whose first-layer patches are in slot 1
        self.forget()

    def forget(self) -> None:
        """Drop the kept forward pass (the weights changed; first-layer patches stay valid)."""
        self._saved_input = None
        self._saved = []
        self._saved_features = None

    def _holds(self, x: np.ndarray) -> bool:
        """Whether the kept forward pass is of exactly ``x`` with the current weights."""
        return self._saved_input is not None and np.array_equal(self._saved_input, x)

    # -- forward --------------------------------------------------------------------------
    def _forward_kept(self, x: np.ndarray) -> np.ndarray:
        """``forward(x, keep=True)``, or the kept pass when it is of ``x`` with the current
        weights (``act`` ran it; ``update`` reuses it)."""
        return self.outputs if self._holds(x) else self._forward(x, keep=True)

    def _forward(self, x: np.ndarray, keep: bool = True) -> np.ndarray:
        """The heads' outputs (float32, concatenated) for one flat float32 input ``x``; with
        ``keep``, the activations are kept for the backward pass and the outputs are
        :attr:`outputs`.

        A conv layer is one matrix product with its im2col patches (gathered by a precomputed
        index), which are kept: the weight gradient is then one more product with them."""
        h = torch.from_numpy(x)
        saved = []
        slot = 0 if keep else 1
        # The first layer's patches depend on the input only: s' of an update is the s of the
        # next act, so the kept pass takes them over from the other slot instead of gathering.
        reuse_first = keep and self._other_input is not None and np.array_equal(self._other_input, x)
        if reuse_first:
            self._patches[0][0], self._patches[1][0] = self._patches[1][0], self._patches[0][0]
            self._other_input = None
        elif not keep:
            self._other_input = x.copy()
        patches = self._patches[slot]
        for layer, (patch_index, weight, bias, _, _) in enumerate(self._hidden_views):
            if patch_index is None:
                inputs = h
                pre = torch.addmv(bias, weight, h)
            else:
                buffer = patches[layer]
                assert buffer is not None  # allocated for each layer with a patch index
                inputs = buffer
                if not (layer == 0 and reuse_first):
                    torch.index_select(h, 0, patch_index.view(-1), out=inputs.view(-1))
                pre = torch.addmm(self._bias_columns[layer], weight, inputs).view(-1)
            if self.layer_norm:
                normalized, mean, rstd = torch.native_layer_norm(pre, pre.shape, None, None, _LAYER_NORM_EPS)
            else:
                normalized, mean, rstd = pre, None, None
            saved.append((inputs, pre, normalized, mean, rstd))
            h = F.leaky_relu(normalized, LEAKY_RELU_SLOPE)
        heads = [torch.addmv(bias, weight, h) for weight, bias, _, _ in self._head_views]
        out = (heads[0] if len(heads) == 1 else torch.cat(heads)).numpy()
        if not keep:
            return out
        self._saved, self._saved_features = saved, h
        self._saved_input = x.copy()
        self.outputs[:] = out
        return self.outputs

    # -- backward into the trace ----------------------------------------------------------
    @torch.no_grad()
    def _accumulate_trace(self, output_gradient: np.ndarray) -> np.float32:
        """``z ← γλ z + ∇(output_gradient · outputs)`` at the kept input (PAPER §1.1);
        returns ``Σ‖z‖₁``. The trace is decayed by one multiplication, as torch.optim's
        ``_foreach_mul_``, and each weight gradient is accumulated into its slice by an in-place
        product (``addr_`` / ``addmm_``: the sum is rounded once, not the gradient first)."""
        if self._saved_features is None:
            raise RuntimeError("accumulate_trace needs a kept forward pass (forward(x, keep=True)) first")
        self._trace.mul_(self.settings[kernels.TRACE_DECAY].item())
        features = self._saved_features
        grad = torch.from_numpy(np.ascontiguousarray(output_gradient, dtype=np.float32))
        grad_h = torch.zeros_like(features)
        start = 0
        for weight, _, weight_trace, bias_trace in self._head_views:
            g = grad[start:start + weight.shape[0]]
            start += weight.shape[0]
            weight_trace.addr_(g, features)
            bias_trace.add_(g)
            grad_h.addmv_(weight.t(), g)
        for index in range(len(self._hidden_views) - 1, -1, -1):
            patch_index, weight, _, weight_trace, bias_trace = self._hidden_views[index]
            inputs, pre, normalized, mean, rstd = self._saved[index]
            grad_pre = torch.ops.aten.leaky_relu_backward(grad_h, normalized, LEAKY_RELU_SLOPE, False)
            if self.layer_norm:
                grad_pre = torch.ops.aten.native_layer_norm_backward(
                    grad_pre, pre, pre.shape, mean, rstd, None, None, [True, False, False])[0]
            need_input = index > 0  # the observation needs no gradient
            if patch_index is None:
                weight_trace.addr_(grad_pre, inputs)
                bias_trace.add_(grad_pre)
                if need_input:
                    grad_h = torch.mv(weight.t(), grad_pre)
            else:
                grad_pre = grad_pre.view(weight.shape[0], -1)  # [C_out, positions]
                weight_trace.addmm_(grad_pre, inputs.t())
                bias_trace.add_(grad_pre.sum(1))
                if need_input:  # col2im: each patch entry's gradient back to its input pixel
                    grad_patches = weight.t().mm(grad_pre)
                    grad_h = torch.zeros(self._saved[index - 1][2].numel()).index_add_(
                        0, patch_index.view(-1), grad_patches.view(-1))
        return np.float32(l1_norm(self._trace_tensors).item())  # as the autograd optimizer sums it


ConvNetwork = GemmConvNetwork | TorchConvNetwork


def conv_network_class() -> type[GemmConvNetwork] | type[TorchConvNetwork]:
    """:class:`GemmConvNetwork` where torch exports MKL's SGEMM (:data:`streamx.fast.gemm.AVAILABLE`),
    else :class:`TorchConvNetwork`."""
    return GemmConvNetwork if gemm.AVAILABLE else TorchConvNetwork


def _check_convolutions(hidden: list[WeightLayer]) -> None:
    for layer in hidden:
        if isinstance(layer, nn.Conv2d) and (
                layer.kernel_size[0] != layer.kernel_size[1] or layer.stride[0] != layer.stride[1]
                or layer.padding not in (0, (0, 0)) or layer.dilation != (1, 1) or layer.groups != 1):
            raise ConfigError(f"the fast path supports square, unpadded, ungrouped convolutions only, not "
                              f"{layer}; use fast_path=off")


def _patch_index(shape: tuple[int, ...], conv: nn.Conv2d) -> tuple[Tensor, tuple[int, int, int]]:
    """im2col as a gather: ``index[r, p]`` is the flat input position that patch row
    ``r = (c, i, j)`` (a conv weight's [C, k, k] order) reads at output position ``p``; and the
    conv's output shape."""
    channels, height, width = shape
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    positions = torch.arange(channels * height * width, dtype=torch.float64).view(1, channels, height, width)
    index = F.unfold(positions, kernel, stride=stride)[0].round().long()
    out_height, out_width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    return index, (conv.out_channels, out_height, out_width)


def _as_input(obs: np.ndarray) -> np.ndarray:
    """A 1-D view of a checked observation (:mod:`streamx.validation`)."""
    return obs.reshape(-1)


class _ConvAgent(_FastAgent):
    """Builds conv networks (:func:`conv_network_class`) instead of numba
    :class:`~streamx.fast.agents.FlatNetwork` s."""

    _flat: dict[str, ConvNetwork]  # type: ignore[assignment]  # the conv agents' networks replace FlatNetwork

    def _build_flat_networks(self, layouts: dict[str, tuple[list[WeightLayer], list[nn.Linear]]]) -> None:
        shape = tuple(self.observation_space.shape or ())
        network = conv_network_class()
        self._flat = {
            name: network(self._networks[name], hidden, heads, self.config.layer_norm, self._optimizers[name],
                              shape)
            for name, (hidden, heads) in layouts.items()
        }


# ==============================================================================================
# Stream Q(λ) and SARSA(λ): the action-value core of streamx.fast.agents on a conv network
# ==============================================================================================

class _ConvActionValue(_ConvAgent, _FastActionValue):
    _q: ConvNetwork  # type: ignore[assignment]  # every method reading it as a FlatNetwork is overridden here

    def _q_values_array(self, obs: Any, reuse: bool = True) -> np.ndarray:
        return self._q._forward(_as_input(obs))

    def _q_values(self, obs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self._q._forward(_as_input(obs), keep=False).copy())

    def _forward_pair(self, obs: Any, next_obs: Any) -> tuple[np.ndarray, np.ndarray]:
        q_values = self._q._forward_kept(_as_input(obs))  # usually kept by act
        return q_values, self._q._forward(_as_input(next_obs), keep=False)

    def _learn_output(self, index: int, td_error: np.float32, reset: bool) -> tuple[np.float32, np.float32]:
        gradient = np.zeros(self._q.num_outputs, dtype=np.float32)
        gradient[index] = kernels.ONE
        trace_norm = self._q._accumulate_trace(gradient)
        return self._q.step(td_error, reset, trace_norm), trace_norm


class ConvStreamQ(StreamQ, _ConvActionValue):
    """Stream Q(λ) on the Atari conv net (GemmConvNetwork or TorchConvNetwork); not a
    FastStreamQ, whose act and update call the MLP/MinAtar kernels directly."""


class ConvStreamSARSA(FastStreamSARSA, _ConvActionValue):
    """Stream SARSA(λ) on the Atari conv net (GemmConvNetwork or TorchConvNetwork)."""


# ==============================================================================================
# Stream TD(λ)
# ==============================================================================================

class ConvStreamTD(StreamTD, _ConvAgent):
    """Stream TD(λ) on the Atari conv net (GemmConvNetwork or TorchConvNetwork)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        self._build_flat_networks({"value_network": _hidden_and_output(self.value_network)})
        self._value = self._flat["value_network"]

    def _predict(self, obs: np.ndarray) -> float:
        return float(self._value._forward(_as_input(obs), keep=False)[0])

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        net = self._value
        value = net._forward_kept(_as_input(obs))[0]
        next_value = net._forward(_as_input(next_obs), keep=False)[0]
        discount = np.float32(self.config.gamma * td_target_mask(terminated, truncated, self.config))
        td_error = (np.float32(reward) + discount * next_value) - value
        self._check_finite(td_error)
        trace_norm = net._accumulate_trace(np.ones(1, dtype=np.float32))
        step_size = net.step(td_error, bool(terminated or truncated), trace_norm)
        self.num_updates += 1
        return {"td_error": float(td_error), "effective_step_size": float(step_size),
                "trace_norm": float(trace_norm), "prediction": float(value)}


# ==============================================================================================
# Stream AC(λ)
# ==============================================================================================

class ConvStreamAC(StreamAC, _ConvAgent):
    """Stream AC(λ) on the Atari conv net (GemmConvNetwork or TorchConvNetwork); the policy heads'
    gradients are the numba kernels' closed forms (as in :class:`~streamx.fast.agents.FastStreamAC`)."""

    def __init__(self, observation_space: gym.spaces.Space, action_space: gym.spaces.Space | None,
                 config: Config) -> None:
        super().__init__(observation_space, action_space, config)
        heads = _policy_heads(self.actor)
        self._build_flat_networks({"critic": _hidden_and_output(self.critic),
                                   "actor": (_weight_layers(self.actor.trunk), heads)})
        self._critic = self._flat["critic"]
        self._actor = self._flat["actor"]
        self._num_outputs = heads[0].out_features
        self._log_probs = np.zeros(self._num_outputs, dtype=np.float64)
        self._entropy_coef = np.float32(config.entropy_coef)
        self._clamp_eps = np.float64(CLAMP_EPS if config.policy_prob_clamp else 0.0)

    def _distribution(self, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian: (mean, std); categorical: (probabilities, logits)."""
        n = self._num_outputs
        if self.continuous:
            return outputs[:n], np.array([kernels.softplus(v) for v in outputs[n:]], dtype=np.float32)
        kernels._log_softmax(outputs, 0, n, self._log_probs)
        return np.exp(self._log_probs).astype(np.float32), outputs

    def _act(self, obs: np.ndarray, deterministic: bool) -> Any:
        outputs = self._actor._forward(_as_input(obs))
        first, second = self._distribution(outputs)
        n = self._num_outputs
        if self.continuous:
            if deterministic:
                return first.copy()
            noise = torch.randn((1, n), generator=self.torch_generator).numpy()[0]
            return first + second * noise
        if deterministic:
            return int(outputs.argmax())
        return int(torch.multinomial(torch.from_numpy(first), 1, generator=self.torch_generator)[0])

    def _update(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool,
                truncated: bool) -> dict[str, float]:
        critic, actor = self._critic, self._actor
        x = _as_input(obs)
        value = critic._forward_kept(x)[0]
        next_value = critic._forward(_as_input(next_obs), keep=False)[0]
        discount = np.float32(self.config.gamma * td_target_mask(terminated, truncated, self.config))
        td_error = (np.float32(reward) + discount * next_value) - value
        self._check_finite(td_error)

        outputs = actor._forward_kept(x)  # usually kept by act
        sign = kernels.ONE if td_error > 0 else (-kernels.ONE if td_error < 0 else kernels.ZERO)
        entropy_sign = np.float32(self._entropy_coef * sign)
        gradient = np.zeros(actor.num_outputs, dtype=np.float32)
        if self.continuous:
            action_vector = action  # checked: float32, the action space's shape
            entropy = kernels._gaussian_objective_gradient(outputs, gradient, 0, self._num_outputs, action_vector,
                                                           entropy_sign)
        else:
            entropy = kernels._categorical_objective_gradient(outputs, gradient, 0, self._num_outputs, action,
                                                              entropy_sign, self._log_probs, self._clamp_eps)
        reset = bool(terminated or truncated)
        critic_norm = critic._accumulate_trace(np.ones(1, dtype=np.float32))
        critic_step = critic.step(td_error, reset, critic_norm)
        actor_norm = actor._accumulate_trace(gradient)
        actor_step = actor.step(td_error, reset, actor_norm)
        self.num_updates += 1
        return {"td_error": float(td_error), "effective_step_size": float(critic_step),
                "trace_norm": float(critic_norm), "policy_effective_step_size": float(actor_step),
                "policy_trace_norm": float(actor_norm), "entropy": float(entropy)}


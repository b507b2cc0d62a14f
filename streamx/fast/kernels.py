"""Fused numba kernels for the stream-x agents with MLPs and the MinAtar conv net: forward,
backward into the eligibility trace, and the ObGD / AdaptiveObGD / traced-SGD step, all on
flat float32 buffers.

Streaming RL does one batch-1 update per environment step, so the cost of an update is the
overhead of launching many tiny tensor operations, not arithmetic. Here one compiled call does
a whole update. The arithmetic follows the float32 autograd path of ``streamx.agents``
operation by operation (same rounding of every scalar to float32, same order of the
elementwise operations, no fused multiply-add in them), so both paths agree to float32
rounding of the reductions (dot products, norms), whose order differs.

Conventions
-----------
A network is described by:

``state``  float32 ``[4, num_params]``; rows ``WEIGHTS``, ``TRACE`` (the eligibility trace),
    ``SECOND_MOMENT`` (AdaptiveObGD's ``v``) and ``DIRECTION`` (scratch for AdaptiveObGD's
    normalized trace). The parameters are flattened in ``module.parameters()`` order, each
    tensor row-major, so a Linear weight is ``[out, in]`` as in torch.
``layers`` int64 ``[num_layers, LAYER_COLUMNS]``; one row per Linear or Conv2d layer: first
    the hidden layers (layer → LayerNorm over all its features → LeakyReLU, PAPER §1.4), then
    the output heads, which all read the last hidden activation. Columns are named by the
    ``W_AT … W_OUT`` constants. A Conv2d (valid padding, square kernel: PAPER §3's MinAtar
    net) may only be the first layer: its output (C, H, W) is laid out as torch's Flatten
    reads it, and no gradient is propagated to the observation.
``workspace`` float32 ``[3, width]``: row 0 holds sample 0's activations (s), row 1 sample 1's
    (s'), row 2 the gradient of the learned scalar with respect to each slot of row 0.
``conv`` None for an MLP, True when the first layer is a Conv2d: a compile-time switch (see
    "Compile time" below), as is ``continuous`` (True: Gaussian policy, None: categorical).

Numerics. Operations that torch performs as single float32 elementwise operations (trace decay
and accumulation, the step, AdaptiveObGD's second moment, the TD error, LeakyReLU, the
Gaussian head) are written in the same float32 order, so they give identical results on
identical inputs. The Linear layers' dot products (forward ``W x`` and backward ``Wᵀ g``) are
summed in float32 SIMD lanes, as torch's float32 GEMV/GEMM sums them in an order of its own, and
each trace row's ‖z‖₁ likewise (rows added in float64): the difference to torch is of the order
of torch's own float32 rounding error. The other reductions and composite kernels whose
internal order in torch is not specified (conv sums, LayerNorm, log-softmax, the remaining
norms) are computed in float64 and rounded once to float32. The conv sums add exact
float32·float32 products in the same order as a direct loop, so they equal a float64 conv.

Sign convention (PAPER §1.1): the trace accumulates the gradient of the quantity being
learned (``v(s)``, ``Q(s, a)`` or the actor's objective) and the step is ``w ← w + α̂ δ z``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

# -- table layout ---------------------------------------------------------------------------
W_AT = 0  # offset of the layer's weight [out, in] in the flat parameter vector
B_AT = 1  # offset of its bias [out]
N_IN = 2  # in_features
N_OUT = 3  # out_features
IN_AT = 4  # workspace offset of the layer's input
PRE_AT = 5  # workspace offset of its Linear output (pre-activation; for a head: the output)
ACT_AT = 6  # workspace offset of the hidden activation LeakyReLU(LayerNorm(pre)) (hidden only)
KIND = 7  # LINEAR or CONV
C_IN, H_IN, W_IN = 8, 9, 10  # conv input shape (N_IN = C_IN·H_IN·W_IN)
KERNEL, STRIDE = 11, 12  # conv kernel size and stride
H_OUT, W_OUT = 13, 14  # conv output height and width (N_OUT = out_channels·H_OUT·W_OUT)
LAYER_COLUMNS = 15
LINEAR, CONV = 0, 1

WEIGHTS, TRACE, SECOND_MOMENT, DIRECTION = 0, 1, 2, 3
STATE_ROWS = 4

# -- optimizer rules -------------------------------------------------------------------------
OBGD, ADAPTIVE_OBGD, TRACED_SGD = 0, 1, 2
# settings vector (float32) passed to the step, one per network
LR, KAPPA, LR_TIMES_KAPPA, TRACE_DECAY, BETA2, ONE_MINUS_BETA2, EPS = range(7)
NUM_SETTINGS = 7

# -- constants, rounded to float32 as torch rounds a Python scalar in a float32 op -----------
LEAKY_RELU_SLOPE = np.float32(0.01)
LAYER_NORM_EPS = 1e-5  # F.layer_norm's default, used in float64 here
SOFTPLUS_THRESHOLD = np.float32(20.0)
HALF_LOG_2PI = np.float32(0.5 * math.log(2.0 * math.pi))
GAUSSIAN_ENTROPY_CONSTANT = np.float32(0.5 + 0.5 * math.log(2.0 * math.pi))  # per dimension
ONE = np.float32(1.0)
ZERO = np.float32(0.0)
NAN = np.float32(np.nan)

# Every kernel keeps IEEE semantics and the written order of operations: no 'contract' (no
# FMA) and no other fast-math flag. Only the float64 reductions (dot products, sums, norms) may
# be reassociated, so LLVM can vectorize them, as torch's SIMD reductions are. The numpy error
# model lets a float division by zero give inf/nan as in torch instead of raising (and keeps
# the division loops vectorizable).
_kernel = njit(cache=True, error_model="numpy")
_reduction = njit(cache=True, error_model="numpy", fastmath={"reassoc"})
# Small helpers are inlined into their callers' numba IR: each separately compiled function
# costs its own LLVM optimization and machine-code generation (of it and of everything it calls),
# which dominated the cold start. (Functions that branch on ``conv`` stay separate: numba prunes
# those branches by the types of a compiled function's own arguments.)
_inline = njit(cache=True, error_model="numpy", inline="always")


# ============================================================================================
# Reductions (float64 accumulators)
# ============================================================================================
#
# Compile time (a cold start compiles everything a run calls; docs/performance.md):
# - A run compiles only what its network needs: every function that may touch a conv layer
#   takes ``conv``, None for an MLP and True when the first layer is a Conv2d. numba prunes
#   ``if conv is not None`` branches for a None argument before typing, so MLP runs never
#   compile the conv code (likewise ``continuous`` for the Gaussian policy code).
# - Few separately compiled functions: each costs LLVM optimization and machine code for
#   itself and everything it calls, so small helpers are inlined (``_inline``), and the agents
#   call few entry points (Q: ``forward_pair`` for act and update, ``learn_output``).
# - One specialization each: no constant is passed on as an argument. numba types a constant
#   flag as Literal[bool] even when it is first assigned to a variable, and compiles the callee
#   once per value; flags are therefore computed at run time (``_no``, ``layers[0, KIND]``) or
#   come from the caller's own arguments, and each callee has one call site where it can
#   (``forward_pair``; ``_conv_scatter`` for the conv forward and weight gradient). Layers are
#   addressed by offsets into flat 1-D buffers (no reshape, slice assignment or astype, each of
#   which compiles library code).
# Hot loops index slices with range variables only (never ``offset + j``): numba then emits no
# negative-index wraparound, which would keep LLVM from vectorizing them.

@_reduction
def l1_norm(x: np.ndarray) -> np.float32:
    """Σ|x| (accumulated in float64)."""
    total = 0.0
    for i in range(x.shape[0]):
        total += abs(np.float64(x[i]))
    return np.float32(total)


@_reduction
def _layer_norm_statistics(buffer: np.ndarray, at: int, n: int) -> tuple[float, float]:
    """Mean and 1/√(biased variance + eps) of buffer[at:at+n], two-pass in float64
    (F.layer_norm's moments)."""
    x = buffer[at:at + n]  # indexed by range variables only: see _linear
    total = 0.0
    for j in range(n):
        total += np.float64(x[j])
    mean = total / n
    squares = 0.0
    for j in range(n):
        deviation = np.float64(x[j]) - mean
        squares += deviation * deviation
    return mean, 1.0 / math.sqrt(squares / n + LAYER_NORM_EPS)


@_reduction
def _layer_norm_gradient_sums(activations: np.ndarray, gradients: np.ndarray, pre_at: int, act_at: int, n: int,
                              mean: float, rstd: float) -> tuple[float, float]:
    """Σ dy and Σ dy·x̂ in float64, dy = gradients[act], x̂ = (activations[pre] − mean)·rstd."""
    pre, grad = activations[pre_at:pre_at + n], gradients[act_at:act_at + n]
    sum_dy = 0.0
    sum_dy_normalized = 0.0
    for j in range(n):
        dy = np.float64(grad[j])
        sum_dy += dy
        sum_dy_normalized += dy * ((np.float64(pre[j]) - mean) * rstd)
    return sum_dy, sum_dy_normalized


# ============================================================================================
# Forward
# ============================================================================================

@_reduction
def _linear(weights: np.ndarray, layers: np.ndarray, layer: int, activations: np.ndarray, other: np.ndarray,
            pair: bool) -> None:
    """activations[pre] = W · activations[in] + b in float32 (each row's dot product summed in
    SIMD lanes, reassociated, as a float32 GEMV does); with ``pair``, the same for the second
    workspace row ``other`` in the same pass over W. (A flag, not ``other=None``: one compiled
    specialization instead of two.)"""
    w_at, b_at, n_in, n_out = layers[layer, W_AT], layers[layer, B_AT], layers[layer, N_IN], layers[layer, N_OUT]
    in_at, pre_at = layers[layer, IN_AT], layers[layer, PRE_AT]
    # Loops index slices by range variables (never ``at + j``): numba then knows the index is
    # non-negative and emits no wraparound code, which would stop LLVM from vectorizing.
    x = activations[in_at:in_at + n_in]
    if pair:
        other_x = other[in_at:in_at + n_in]
        for i in range(n_out):
            weight = weights[w_at + i * n_in:w_at + (i + 1) * n_in]
            total = ZERO
            other_total = ZERO
            for j in range(n_in):
                w = weight[j]
                total += w * x[j]
                other_total += w * other_x[j]
            bias = weights[b_at + i]
            activations[pre_at + i] = total + bias
            other[pre_at + i] = other_total + bias
    else:
        for i in range(n_out):
            weight = weights[w_at + i * n_in:w_at + (i + 1) * n_in]
            total = ZERO
            for j in range(n_in):
                total += weight[j] * x[j]
            activations[pre_at + i] = total + weights[b_at + i]


@_inline
def _conv_taps(y_in: int, kernel: int, stride: int, size_out: int, taps: np.ndarray) -> int:
    """The kernel rows i (and output rows y = (y_in − i) / stride) that input row ``y_in``
    feeds, in ascending i, as pairs in ``taps``; returns how many."""
    count = 0
    for i in range(kernel):
        offset = y_in - i
        if offset >= 0 and offset % stride == 0 and offset // stride < size_out:
            taps[2 * count] = i
            taps[2 * count + 1] = offset // stride
            count += 1
    return count


@_kernel
def _conv_scatter(layers: np.ndarray, activations: np.ndarray, source: np.ndarray, target: np.ndarray,
                  source_by_tap: bool) -> None:
    """The first (conv) layer's sums over its input, channels-last: for every nonzero input
    pixel v and every kernel tap (c, i, j) and output position (y, x) it meets, add
    ``source[a, :]·v`` to ``target[b, :]`` over the output channels, where (a, b) is (tap,
    position) when ``source_by_tap`` (the forward pass: weights into sums) and (position, tap)
    otherwise (the weight gradient: output gradients into weight gradients). Visiting input
    pixels in (c, y_in, x_in) order, each sum receives its terms in the order of a direct loop:
    (c, i, j) for an output, the positions ascending for a weight. Compiled once for both uses
    (``source_by_tap`` is a run-time flag; see ``_no``) rather than inlined into each."""
    channels_in, height_in, width_in = layers[0, C_IN], layers[0, H_IN], layers[0, W_IN]
    kernel, stride, height, width = layers[0, KERNEL], layers[0, STRIDE], layers[0, H_OUT], layers[0, W_OUT]
    channels_out = layers[0, N_OUT] // (height * width)
    in_at = layers[0, IN_AT]
    row_taps = np.empty(2 * kernel, dtype=np.int64)
    column_taps = np.empty(2 * kernel, dtype=np.int64)
    for c in range(channels_in):
        for y_in in range(height_in):
            rows = _conv_taps(y_in, kernel, stride, height, row_taps)
            if rows == 0:
                continue
            first = in_at + (c * height_in + y_in) * width_in
            pixels = activations[first:first + width_in]
            for x_in in range(width_in):
                value = pixels[x_in]
                if value == ZERO:
                    continue
                value64 = np.float64(value)
                columns = _conv_taps(x_in, kernel, stride, width, column_taps)
                for a in range(rows):
                    i, y = row_taps[2 * a], row_taps[2 * a + 1]
                    for b in range(columns):
                        j, x = column_taps[2 * b], column_taps[2 * b + 1]
                        tap = ((c * kernel + i) * kernel + j) * channels_out
                        out = (y * width + x) * channels_out
                        source_at, target_at = (tap, out) if source_by_tap else (out, tap)
                        terms = source[source_at:source_at + channels_out]
                        sums = target[target_at:target_at + channels_out]
                        for o in range(channels_out):
                            sums[o] += terms[o] * value64


@_inline
def _first_conv_shape(layers: np.ndarray) -> tuple[int, int, int]:
    """The first (conv) layer's output positions, output channels and fan-in (C_in·k·k)."""
    kernel = layers[0, KERNEL]
    positions = layers[0, H_OUT] * layers[0, W_OUT]
    return positions, layers[0, N_OUT] // positions, layers[0, C_IN] * kernel * kernel


@_kernel
def _conv(weights: np.ndarray, layers: np.ndarray, activations: np.ndarray) -> None:
    """activations[pre] = Conv2d(activations[in]) for the first layer (valid padding),
    accumulated in float64 and rounded once to float32, through ``_conv_scatter``: weights and
    sums channels-last, so the innermost loop over the output channels is contiguous and
    vectorizes; zero input pixels (MinAtar observations are binary and mostly zero) are skipped.
    float32·float32 products are exact in float64 and each output sums them in the direct loop's
    order, so the result is the same as the direct loop's."""
    positions, channels_out, fan_in = _first_conv_shape(layers)
    w_at, b_at, pre_at = layers[0, W_AT], layers[0, B_AT], layers[0, PRE_AT]
    weight = weights[w_at:w_at + channels_out * fan_in]
    transposed = np.empty(fan_in * channels_out)  # [c, i, j, o]
    for o in range(channels_out):
        for q in range(fan_in):
            transposed[q * channels_out + o] = np.float64(weight[o * fan_in + q])
    total = np.empty(positions * channels_out)  # [y, x, o]
    bias = weights[b_at:b_at + channels_out]
    for p in range(positions):
        for o in range(channels_out):
            total[p * channels_out + o] = np.float64(bias[o])
    by_tap = layers[0, KIND] == CONV  # True: weights (by tap) into sums (by position); typed bool, see _no
    _conv_scatter(layers, activations, transposed, total, by_tap)
    result = activations[pre_at:pre_at + channels_out * positions]
    for o in range(channels_out):
        for p in range(positions):
            result[o * positions + p] = np.float32(total[p * channels_out + o])


@_inline
def _normalize_and_activate(layers: np.ndarray, layer: int, layer_norm: bool, activations: np.ndarray) -> None:
    """activations[act] = LeakyReLU(LayerNorm(activations[pre])) (PAPER §1.4)."""
    n, pre_at, act_at = layers[layer, N_OUT], layers[layer, PRE_AT], layers[layer, ACT_AT]
    mean, rstd = _layer_norm_statistics(activations, pre_at, n) if layer_norm else (0.0, 1.0)
    pre, hidden = activations[pre_at:pre_at + n], activations[act_at:act_at + n]
    for j in range(n):
        normalized = np.float32((np.float64(pre[j]) - mean) * rstd) if layer_norm else pre[j]
        hidden[j] = normalized if normalized > ZERO else normalized * LEAKY_RELU_SLOPE


@_inline
def _copy_input(x: np.ndarray, activations: np.ndarray) -> None:
    for j in range(x.shape[0]):
        activations[j] = x[j]  # the first layer's input sits at offset 0


@_kernel
def _forward_rows(weights: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
                  activations: np.ndarray, other: np.ndarray, pair: bool, conv: Any) -> None:
    """The network on the input(s) already in place: row ``activations`` and, with ``pair``,
    row ``other`` (reading each Linear weight matrix once for both)."""
    for layer in range(layers.shape[0]):
        done = False
        if conv is not None:  # noqa: SIM102 - alone, so numba prunes it for conv=None
            if layer == 0:
                _conv(weights, layers, activations)
                if pair:
                    _conv(weights, layers, other)
                done = True
        if not done:
            _linear(weights, layers, layer, activations, other, pair)
        if layer < num_hidden:
            _normalize_and_activate(layers, layer, layer_norm, activations)
            if pair:
                _normalize_and_activate(layers, layer, layer_norm, other)


@_inline
def forward(weights: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, x: np.ndarray,
            activations: np.ndarray, conv: Any) -> None:
    """Run the network on one input ``x``; every intermediate lands in ``activations``.
    ``conv``: None for an MLP, True when the first layer is a Conv2d."""
    _copy_input(x, activations)
    _forward_rows(weights, layers, num_hidden, layer_norm, activations, activations, _no(x), conv)


@_inline
def _no(x: np.ndarray) -> bool:
    """False, typed ``bool``: numba types a constant ``False`` passed on as ``Literal[bool]``
    and compiles the callee once per literal value; a value it cannot fold shares one
    specialization with the run-time flags of other call sites."""
    return x.shape[0] < 0


@_inline
def same_input(layers: np.ndarray, x: np.ndarray, activations: np.ndarray) -> bool:
    """Whether ``activations`` already hold a forward pass of exactly ``x``. Compared 64 entries
    at a time without a branch inside a block (the block's loop is vectorized; an Atari input of
    28k entries in ≈ 3 µs instead of ≈ 17 µs one entry at a time), then the rest one by one."""
    n = x.shape[0]
    j = 0
    while j + 64 <= n:
        differ = False
        for k in range(j, j + 64):
            differ |= activations[k] != x[k]
        if differ:
            return False
        j += 64
    for k in range(j, n):  # noqa: SIM110 - a plain loop compiles in numba, all(<genexpr>) does not
        if activations[k] != x[k]:
            return False
    return True


# ============================================================================================
# Backward, fused with the trace update z ← γλ z + g  (PAPER §1.1) and its ‖z‖₁
# ============================================================================================

@_reduction
def _linear_backward(weights: np.ndarray, trace: np.ndarray, layers: np.ndarray, layer: int,
                     activations: np.ndarray, gradients: np.ndarray, trace_decay: np.float32,
                     propagate: bool) -> float:
    """For one Linear layer with output gradient g = gradients[pre]: the fused trace update
    ``z_W ← decay·z_W + g xᵀ``, ``z_b ← decay·z_b + g`` — elementwise float32, as torch's
    ``_foreach_mul_`` then ``_foreach_add_`` of the gradient, which torch rounds to float32 —
    and, when ``propagate``, ``gradients[in] += Wᵀ g`` (added: several heads share one input;
    the caller zeroes it), summed in float32 like a GEMV. Returns the layer's new ‖z‖₁ (each
    row summed in float32 SIMD lanes, the rows in float64)."""
    w_at, b_at, n_in, n_out = layers[layer, W_AT], layers[layer, B_AT], layers[layer, N_IN], layers[layer, N_OUT]
    in_at, pre_at = layers[layer, IN_AT], layers[layer, PRE_AT]
    accumulated = np.zeros(n_in if propagate else 0, dtype=np.float32)
    x = activations[in_at:in_at + n_in]
    norm = 0.0
    first = 0
    if propagate:
        # two rows at a time: each accumulated[j] is loaded and stored once for both (the
        # sums keep their row-by-row order), which unburdens the load/store ports
        for pair in range(n_out // 2):
            i = 2 * pair
            grad, next_grad = gradients[pre_at + i], gradients[pre_at + i + 1]
            weight_trace = trace[w_at + i * n_in:w_at + (i + 1) * n_in]
            next_trace = trace[w_at + (i + 1) * n_in:w_at + (i + 2) * n_in]
            weight = weights[w_at + i * n_in:w_at + (i + 1) * n_in]
            next_weight = weights[w_at + (i + 1) * n_in:w_at + (i + 2) * n_in]
            row_norm = ZERO
            next_norm = ZERO
            for j in range(n_in):
                z = weight_trace[j] * trace_decay + grad * x[j]
                weight_trace[j] = z
                row_norm += abs(z)
                next_z = next_trace[j] * trace_decay + next_grad * x[j]
                next_trace[j] = next_z
                next_norm += abs(next_z)
                accumulated[j] = (accumulated[j] + weight[j] * grad) + next_weight[j] * next_grad
            bias = trace[b_at + i] * trace_decay + grad
            trace[b_at + i] = bias
            next_bias = trace[b_at + i + 1] * trace_decay + next_grad
            trace[b_at + i + 1] = next_bias
            norm += np.float64(row_norm) + abs(np.float64(bias))
            norm += np.float64(next_norm) + abs(np.float64(next_bias))
        first = n_out // 2 * 2
    for i in range(first, n_out):  # row slices indexed by range variables: see _linear
        grad = gradients[pre_at + i]
        weight_trace = trace[w_at + i * n_in:w_at + (i + 1) * n_in]
        row_norm = ZERO
        if propagate:
            weight = weights[w_at + i * n_in:w_at + (i + 1) * n_in]
            for j in range(n_in):
                z = weight_trace[j] * trace_decay + grad * x[j]
                weight_trace[j] = z
                row_norm += abs(z)
                accumulated[j] += weight[j] * grad
        else:
            for j in range(n_in):
                z = weight_trace[j] * trace_decay + grad * x[j]
                weight_trace[j] = z
                row_norm += abs(z)
        bias = trace[b_at + i] * trace_decay + grad
        trace[b_at + i] = bias
        norm += np.float64(row_norm) + abs(np.float64(bias))
    for j in range(accumulated.shape[0]):
        gradients[in_at + j] += accumulated[j]
    return norm


@_kernel
def _conv_backward(trace: np.ndarray, layers: np.ndarray, activations: np.ndarray, gradients: np.ndarray,
                   trace_decay: np.float32) -> float:
    """The fused trace update of the first (conv) layer, ``z ← decay·z + g`` with
    ``∂/∂W[o, c, i, j] = Σ_p g[o, p]·in[c, y·s + i, x·s + j]`` and ``∂/∂b[o] = Σ_p g[o, p]``
    accumulated in float64 and rounded once to float32 (as torch's conv backward gives them).
    Scattered from the nonzero input pixels channels-last, like ``_conv``; each weight's sum
    still runs over the positions p in ascending order. No gradient reaches the observation.
    Returns the layer's new ‖z‖₁ (float64)."""
    positions, channels_out, fan_in = _first_conv_shape(layers)
    w_at, b_at, pre_at = layers[0, W_AT], layers[0, B_AT], layers[0, PRE_AT]
    output_gradient = gradients[pre_at:pre_at + channels_out * positions]
    transposed = np.empty(positions * channels_out)  # g as [y, x, o]
    for o in range(channels_out):
        for p in range(positions):
            transposed[p * channels_out + o] = np.float64(output_gradient[o * positions + p])
    weight_gradient = np.zeros(fan_in * channels_out)  # [c, i, j, o]
    by_tap = layers[0, KIND] != CONV  # False: output gradients (by position) into weight gradients (by tap)
    _conv_scatter(layers, activations, transposed, weight_gradient, by_tap)
    norm = 0.0
    weight_trace = trace[w_at:w_at + channels_out * fan_in]
    for o in range(channels_out):
        for q in range(fan_in):
            z = weight_trace[o * fan_in + q] * trace_decay + np.float32(weight_gradient[q * channels_out + o])
            weight_trace[o * fan_in + q] = z
            norm += abs(np.float64(z))
    for o in range(channels_out):
        bias_gradient = 0.0
        for p in range(positions):
            bias_gradient += np.float64(output_gradient[o * positions + p])
        z = trace[b_at + o] * trace_decay + np.float32(bias_gradient)
        trace[b_at + o] = z
        norm += abs(np.float64(z))
    return norm


@_inline
def _activation_backward(layers: np.ndarray, layer: int, layer_norm: bool, activations: np.ndarray,
                         gradients: np.ndarray) -> None:
    """gradients[pre] from gradients[act] through LeakyReLU and the parameter-free LayerNorm:
    ``dx = rstd·(dy − mean(dy) − x̂·mean(dy·x̂))`` in float64."""
    n, pre_at, act_at = layers[layer, N_OUT], layers[layer, PRE_AT], layers[layer, ACT_AT]
    # LeakyReLU'(y) = 1 if y > 0 else slope; its output is > 0 exactly when its input is.
    hidden, grad_hidden = activations[act_at:act_at + n], gradients[act_at:act_at + n]
    pre, grad_pre = activations[pre_at:pre_at + n], gradients[pre_at:pre_at + n]
    for j in range(n):
        if not hidden[j] > ZERO:
            grad_hidden[j] = grad_hidden[j] * LEAKY_RELU_SLOPE
    if not layer_norm:
        for j in range(n):
            grad_pre[j] = grad_hidden[j]
        return
    mean, rstd = _layer_norm_statistics(activations, pre_at, n)
    sum_dy, sum_dy_normalized = _layer_norm_gradient_sums(activations, gradients, pre_at, act_at, n, mean, rstd)
    mean_dy, mean_dy_normalized = sum_dy / n, sum_dy_normalized / n
    for j in range(n):
        normalized = (np.float64(pre[j]) - mean) * rstd
        grad_pre[j] = np.float32(rstd * (np.float64(grad_hidden[j]) - mean_dy - normalized * mean_dy_normalized))


@_inline
def _zero(buffer: np.ndarray, at: int, n: int) -> None:
    part = buffer[at:at + n]
    for j in range(n):
        part[j] = ZERO


@_kernel
def accumulate_trace(weights: np.ndarray, trace: np.ndarray, layers: np.ndarray, num_hidden: int,
                     layer_norm: bool, activations: np.ndarray, gradients: np.ndarray,
                     trace_decay: np.float32, conv: Any) -> np.float32:
    """``z ← decay·z + ∇f`` where ``f = Σ_k gradients[out_k]·out_k`` for the sample whose
    forward pass is in ``activations`` (the caller fills the heads' slots of ``gradients``).
    Returns ``Σ‖z‖₁`` over all of the network's tensors, after the update (summed in float64
    as the trace is written, rounded once)."""
    _zero(gradients, layers[num_hidden, IN_AT], layers[num_hidden, N_IN])  # the heads' shared input
    norm = 0.0
    for head in range(num_hidden, layers.shape[0]):
        propagate = head > 0  # always (a bool variable, not a constant: one compiled specialization)
        norm += _linear_backward(weights, trace, layers, head, activations, gradients, trace_decay, propagate)
    for layer in range(num_hidden - 1, -1, -1):
        _activation_backward(layers, layer, layer_norm, activations, gradients)
        done = False
        if conv is not None:  # noqa: SIM102 - alone, so numba prunes it for conv=None
            if layer == 0:  # a conv layer is only ever the first
                norm += _conv_backward(trace, layers, activations, gradients, trace_decay)
                done = True
        if not done:
            propagate = layer > 0  # the input of the first layer is the observation: no gradient
            if propagate:
                _zero(gradients, layers[layer, IN_AT], layers[layer, N_IN])
            norm += _linear_backward(weights, trace, layers, layer, activations, gradients, trace_decay, propagate)
    return np.float32(norm)


# ============================================================================================
# The optimizer step (PAPER §1.1 ObGD, §1.2 AdaptiveObGD; traced SGD = no bound)
# ============================================================================================

@_inline
def _normalized_direction(trace: np.ndarray, second_moment: np.ndarray, direction: np.ndarray,
                          td_error: np.float32, beta2: np.float32, one_minus_beta2: np.float32,
                          eps: np.float32, bias_correction: np.float32) -> None:
    """AdaptiveObGD (PAPER §1.2), in the float32 order of streamx.optim.AdaptiveObGD:
    ``v ← β₂v + (1−β₂)(δz)²``; ``d = z / √(v / (1−β₂ᵗ) + ε)``."""
    for i in range(trace.shape[0]):
        delta_z = trace[i] * td_error
        moment = second_moment[i] * beta2
        moment = moment + one_minus_beta2 * delta_z * delta_z
        second_moment[i] = moment
        direction[i] = trace[i] / np.float32(math.sqrt(moment / bias_correction + eps))


@_kernel
def _apply_step(weights: np.ndarray, direction: np.ndarray, scaled_step: np.float32) -> None:
    """w ← w + d·(α̂δ). A compiled function of its own: inlined, where ``direction`` is one of
    two arrays, LLVM did not vectorize the loop (10× slower)."""
    for i in range(weights.shape[0]):
        weights[i] = weights[i] + direction[i] * scaled_step


@_inline
def _step_size(state: np.ndarray, rule: int, settings: np.ndarray, td_error: np.float32,
               bias_correction: np.float32, trace_norm: np.float32) -> tuple[np.ndarray, np.float32]:
    """The step's direction d and effective step size α̂ (see :func:`optimizer_step`)."""
    trace = state[TRACE]
    direction = trace
    if rule == ADAPTIVE_OBGD:
        direction = state[DIRECTION]
        _normalized_direction(trace, state[SECOND_MOMENT], direction, td_error, settings[BETA2],
                              settings[ONE_MINUS_BETA2], settings[EPS], bias_correction)
    step_size = settings[LR]
    if rule != TRACED_SGD:
        direction_norm = trace_norm if rule == OBGD else l1_norm(direction)
        bound = settings[LR_TIMES_KAPPA] * max(abs(td_error), ONE) * direction_norm
        step_size = step_size * (ONE / max(bound, ONE))
    return direction, step_size


@_inline
def optimizer_step(state: np.ndarray, rule: int, settings: np.ndarray, td_error: np.float32,
                   bias_correction: np.float32, reset: bool, trace_norm: np.float32) -> np.float32:
    """One step ``w ← w + α̂ δ d`` after the trace update (whose ``Σ‖z‖₁`` is ``trace_norm``);
    returns α̂.

    ObGD: ``d = z``, ``M = α κ max(|δ|,1) ‖z‖₁``, ``α̂ = α / max(M, 1)``.
    AdaptiveObGD: d is the normalized trace (see _normalized_direction), M uses ‖d‖₁.
    Traced SGD: ``d = z``, ``α̂ = α``. The trace is zeroed afterwards when ``reset``.
    """
    direction, step_size = _step_size(state, rule, settings, td_error, bias_correction, trace_norm)
    _apply_step(state[WEIGHTS], direction, step_size * td_error)
    if reset:
        _zero(state[TRACE], 0, state.shape[1])
    return step_size


@_reduction
def _step_rows_and_dot(weights: np.ndarray, direction: np.ndarray, scaled_step: np.float32, n_in: int,
                       x: np.ndarray, out: np.ndarray, trace: np.ndarray, reset: bool) -> None:
    """For a Linear weight block [n_out, n_in]: ``w ← w + d·(α̂δ)`` row by row (the same
    float32 operation as ``_apply_step``) and, while the row is in cache, ``out = w_new · x``
    summed as in ``_linear``; with ``reset``, each row of ``trace`` is zeroed once it was read
    (instead of a pass of its own over the whole trace after the step)."""
    for i in range(out.shape[0]):
        weight = weights[i * n_in:(i + 1) * n_in]
        row_direction = direction[i * n_in:(i + 1) * n_in]
        total = ZERO
        for j in range(n_in):
            w = weight[j] + row_direction[j] * scaled_step
            weight[j] = w
            total += w * x[j]
        out[i] = total
        if reset:
            row_trace = trace[i * n_in:(i + 1) * n_in]
            for j in range(n_in):
                row_trace[j] = ZERO


@_inline
def _step_and_forward(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
                      direction: np.ndarray, scaled_step: np.float32, x: np.ndarray, activations: np.ndarray,
                      reset: bool, conv: Any) -> None:
    """The step ``w ← w + d·(α̂δ)`` fused with the forward pass of ``x`` under the new weights
    (into ``activations``), layer by layer: each weight row is stepped and then read once more
    while still in cache, instead of a full step pass and a full forward pass. With ``reset``
    the trace is zeroed layer by layer likewise (after its use in ``d``). The weights end
    exactly as after ``_apply_step``; every parameter belongs to a layer (FlatNetwork checks)."""
    weights, trace = state[WEIGHTS], state[TRACE]
    _copy_input(x, activations)
    for layer in range(layers.shape[0]):
        w_at, b_at, n_in, n_out = layers[layer, W_AT], layers[layer, B_AT], layers[layer, N_IN], layers[layer, N_OUT]
        done = False
        if conv is not None:  # noqa: SIM102 - alone, so numba prunes it for conv=None
            if layer == 0:
                _, channels_out, fan_in = _first_conv_shape(layers)
                count = channels_out * fan_in
                _apply_step(weights[w_at:w_at + count], direction[w_at:w_at + count], scaled_step)
                _apply_step(weights[b_at:b_at + channels_out], direction[b_at:b_at + channels_out], scaled_step)
                if reset:
                    _zero(trace, w_at, count)
                    _zero(trace, b_at, channels_out)
                _conv(weights, layers, activations)
                done = True
        if not done:
            in_at, pre_at = layers[layer, IN_AT], layers[layer, PRE_AT]
            _step_rows_and_dot(weights[w_at:w_at + n_in * n_out], direction[w_at:w_at + n_in * n_out], scaled_step,
                               n_in, activations[in_at:in_at + n_in], activations[pre_at:pre_at + n_out],
                               trace[w_at:w_at + n_in * n_out], reset)
            bias = weights[b_at:b_at + n_out]
            _apply_step(bias, direction[b_at:b_at + n_out], scaled_step)
            if reset:
                _zero(trace, b_at, n_out)
            out = activations[pre_at:pre_at + n_out]
            for i in range(n_out):
                out[i] = out[i] + bias[i]
        if layer < num_hidden:
            _normalize_and_activate(layers, layer, layer_norm, activations)


# ============================================================================================
# Whole updates, one call each
# ============================================================================================

@_inline
def forward_pair(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
                 workspace: np.ndarray, x: np.ndarray, next_x: np.ndarray, reuse_first: bool, first_only: bool,
                 conv: Any) -> None:
    """Forward passes of s (workspace row 0) and s' (row 1) with the same weights, reading
    each weight matrix once. With ``reuse_first`` (the caller knows row 0 holds a pass with
    the current weights) the pass of s is kept when it is of the same ``x``. With
    ``first_only`` only s is run (``next_x`` is ignored; a kept pass of the same ``x`` is
    reused likewise): act and update then share one compiled entry point."""
    weights, activations, next_activations = state[WEIGHTS], workspace[0], workspace[1]
    keep_first = reuse_first and same_input(layers, x, activations)
    if first_only and keep_first:
        return  # e.g. left by learn_output's step fused with the next forward pass
    if not first_only:
        _copy_input(next_x, next_activations)
    if not keep_first:
        _copy_input(x, activations)
    # One call site, whose flag is computed at run time (typed bool): constants here would be
    # typed Literal[bool] and compile _forward_rows once per value (≈1 s of cold start each).
    pair = not (first_only or keep_first)  # s and s' in one pass over the weights
    rows = next_activations if keep_first else activations
    _forward_rows(weights, layers, num_hidden, layer_norm, rows, next_activations, pair, conv)


@_inline
def learn_output(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, workspace: np.ndarray,
                 output_index: int, rule: int, settings: np.ndarray, td_error: np.float32,
                 bias_correction: np.float32, reset: bool, next_x: Any, conv: Any) -> tuple[np.float32, np.float32]:
    """Trace of ∇(output ``output_index`` at s) — ``v(s)`` or ``Q(s, a)`` — then the step.

    Uses the forward pass of s already in workspace row 0 (from ``forward_pair``). When
    ``next_x`` is an input (not None) the step is fused with the forward pass of ``next_x``
    under the new weights, which replaces row 0 (the next ``act`` on that observation then
    reuses it). None prunes the fused code at compile time, and an input the plain step."""
    gradients = workspace[2]
    out_at = layers[num_hidden, PRE_AT]
    for head in range(num_hidden, layers.shape[0]):
        _zero(gradients, layers[head, PRE_AT], layers[head, N_OUT])
    gradients[out_at + output_index] = ONE
    trace_norm = accumulate_trace(state[WEIGHTS], state[TRACE], layers, num_hidden, layer_norm, workspace[0],
                                  gradients, settings[TRACE_DECAY], conv)
    if next_x is None:
        return optimizer_step(state, rule, settings, td_error, bias_correction, reset, trace_norm), trace_norm
    direction, step_size = _step_size(state, rule, settings, td_error, bias_correction, trace_norm)
    _step_and_forward(state, layers, num_hidden, layer_norm, direction, step_size * td_error, next_x, workspace[0],
                      reset, conv)
    return step_size, trace_norm


@_inline
def td_error_of(reward: np.float32, discount: np.float32, next_value: np.float32, value: np.float32) -> np.float32:
    """``δ = r + γ(1−done)·v' − v`` in the float32 order of the autograd agents."""
    return (reward + discount * next_value) - value


@_kernel
def value_update(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, workspace: np.ndarray,
                 x: np.ndarray, next_x: np.ndarray, reward: np.float32, discount: np.float32, rule: int,
                 settings: np.ndarray, bias_correction: np.float32,
                 reset: bool, conv: Any) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    """Stream TD(λ) (PAPER §2): returns (δ, α̂, Σ‖z‖₁, v(s))."""
    forward_pair(state, layers, num_hidden, layer_norm, workspace, x, next_x, False, False, conv)
    out_at = layers[num_hidden, PRE_AT]
    value, next_value = workspace[0, out_at], workspace[1, out_at]
    td_error = td_error_of(reward, discount, next_value, value)
    if not math.isfinite(td_error):  # refused before it reaches traces or weights (the caller raises)
        return td_error, NAN, NAN, value
    step_size, trace_norm = learn_output(state, layers, num_hidden, layer_norm, workspace, 0, rule, settings,
                                         td_error, bias_correction, reset, None, conv)
    return td_error, step_size, trace_norm, value


@_inline
def _argmax(values: np.ndarray, at: int, n: int) -> int:
    """The index in values[at:at+n] of the first maximum, or of the first NaN (torch's argmax)."""
    best = 0
    for k in range(n):
        if math.isnan(values[at + k]):
            return k
        if values[at + k] > values[at + best]:
            best = k
    return best


@_kernel
def q_update(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, workspace: np.ndarray,
             action: int, reward: np.float32, discount: np.float32, bootstrap: bool, episode_end: bool, rule: int,
             settings: np.ndarray, bias_correction: np.float32, next_x: np.ndarray,
             conv: Any) -> tuple[np.float32, np.float32, np.float32, bool]:
    """Stream Q(λ) (PAPER §2, Watkins) after ``forward_pair`` left Q(s, ·) and Q(s', ·) in
    workspace rows 0 and 1: ``δ = r + γ(1−done)·max_a' Q(s', a') − Q(s, a)``, the trace of
    ∇Q(s, a), the step fused with the forward pass of s' under the new weights (left in row 0
    for the next ``act``), and the trace cut after the step when the episode ended or ``a``
    was not greedy (the first maximum, as ``argmax``). ``next_x`` is row 1's input (s').
    Measured against ``learn_output`` called from Python with δ and the cut computed in
    Python: ≈ 8 % faster per step on MinAtar Breakout, for ≈ 1 s more of cold compile.

    Returns (δ, α̂, Σ‖z‖₁, cut); a non-finite δ returns at once with nothing learned (the
    caller raises)."""
    out_at, num_actions = layers[num_hidden, PRE_AT], layers[num_hidden, N_OUT]
    # max() and argmax() as torch's: the first maximum, or the first NaN (so max() is NaN)
    target = workspace[1, out_at + _argmax(workspace[1], out_at, num_actions)] if bootstrap else ZERO
    td_error = td_error_of(reward, discount, target, workspace[0, out_at + action])
    if not math.isfinite(td_error):
        return td_error, NAN, NAN, False
    greedy = _argmax(workspace[0], out_at, num_actions)
    cut = episode_end or action != greedy
    step_size, trace_norm = learn_output(state, layers, num_hidden, layer_norm, workspace, action, rule, settings,
                                         td_error, bias_correction, cut, next_x, conv)
    return td_error, step_size, trace_norm, cut


# -- policies (PAPER §2, Stream AC) -----------------------------------------------------------

@_inline
def softplus(x: np.float32) -> np.float32:
    """F.softplus with β = 1, threshold 20."""
    if x > SOFTPLUS_THRESHOLD:
        return x
    return np.float32(math.log1p(np.float32(math.exp(x))))


@_kernel
def policy_distribution(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
                        workspace: np.ndarray, x: np.ndarray, continuous: Any, reuse_forward: bool,
                        distribution: np.ndarray, conv: Any) -> None:
    """Gaussian (``continuous`` True): distribution = [mean, std]; categorical (``continuous``
    None, so the Gaussian code is not compiled): distribution = softmax(logits).

    With ``reuse_forward`` the pass in workspace row 0 is kept when it is of the same ``x``."""
    activations = workspace[0]
    if not (reuse_forward and same_input(layers, x, activations)):
        forward(state[WEIGHTS], layers, num_hidden, layer_norm, x, activations, conv)
    out_at = layers[num_hidden, PRE_AT]
    if continuous is not None:
        action_dim = layers[num_hidden, N_OUT]
        for k in range(action_dim):
            distribution[k] = activations[out_at + k]
            distribution[action_dim + k] = softplus(activations[out_at + action_dim + k])
    else:
        num_actions = layers[num_hidden, N_OUT]
        log_probs = np.empty(num_actions)
        _log_softmax(activations, out_at, num_actions, log_probs)
        for k in range(num_actions):
            distribution[k] = np.float32(math.exp(log_probs[k]))


@_inline
def _log_softmax(logits: np.ndarray, at: int, n: int, out: np.ndarray) -> None:
    """out[k] = log softmax(logits[at:at+n])[k], in float64."""
    largest = np.float64(logits[at])
    for k in range(1, n):
        largest = max(largest, np.float64(logits[at + k]))
    total = 0.0
    for k in range(n):
        total += math.exp(np.float64(logits[at + k]) - largest)
    log_total = math.log(total)
    for k in range(n):
        out[k] = (np.float64(logits[at + k]) - largest) - log_total


@_inline
def _gaussian_objective_gradient(activations: np.ndarray, gradients: np.ndarray, out_at: int, action_dim: int,
                                 action: np.ndarray, entropy_sign: np.float32) -> np.float32:
    """Fill the heads' gradients of ``log N(a; μ, σ) + entropy_sign·H`` with σ = softplus(pre);
    return H. Written as autograd chains it (u = (a−μ)/σ):

    ∂/∂μ = u/σ;  ∂/∂σ = u·(u/σ) + (entropy_sign − 1)/σ;  ∂/∂pre = ∂/∂σ · eᵖʳᵉ/(eᵖʳᵉ + 1).
    """
    entropy = 0.0
    grad_log_std = entropy_sign - ONE  # from −log σ in log π and +log σ in H
    for k in range(action_dim):
        mean = activations[out_at + k]
        pre = activations[out_at + action_dim + k]
        std = softplus(pre)
        entropy += np.float64(GAUSSIAN_ENTROPY_CONSTANT + np.float32(math.log(std)))
        standardized = (action[k] - mean) / std
        gradients[out_at + k] = standardized / std
        grad_std = standardized * (standardized / std) + grad_log_std / std
        if pre > SOFTPLUS_THRESHOLD:
            gradients[out_at + action_dim + k] = grad_std
        else:
            exp_pre = np.float32(math.exp(pre))
            gradients[out_at + action_dim + k] = grad_std * exp_pre / (exp_pre + ONE)
    return np.float32(entropy)


@_inline
def _categorical_objective_gradient(activations: np.ndarray, gradients: np.ndarray, out_at: int,
                                    num_actions: int, action: int, entropy_sign: np.float32,
                                    log_probs: np.ndarray, clamp_eps: np.float64) -> np.float32:
    """Fill the logits' gradients of ``log π(a) + entropy_sign·H``, H = −Σ π log π; return H.

    With ``clamp_eps`` > 0 the logarithms are of π clamped to [eps, 1 − eps], as torch's
    categorical built from probabilities takes them (PAPER §9): L_k = log clamp(π_k), with u_k = 1
    where π_k lies inside the clamp (else the clamp passes no gradient), H = −Σ π_k L_k and

        ∂/∂l_k = u_a([k = a] − π_k) + s·(−π_k(L_k + H) − π_k(u_k − Σ_j u_j π_j)),   s = entropy_sign;

    with ``clamp_eps`` = 0 every u_k = 1 and this is the plain log-softmax gradient. Float64
    throughout (``log_probs`` is a float64 scratch array): near-deterministic policies make these
    differences cancel."""
    _log_softmax(activations, out_at, num_actions, log_probs)
    low = math.log(clamp_eps) if clamp_eps > 0.0 else -math.inf  # the clamp, in log space
    high = math.log1p(-clamp_eps) if clamp_eps > 0.0 else math.inf
    entropy = 0.0
    inside_mass = 0.0  # Σ_j u_j π_j
    for k in range(num_actions):
        prob = math.exp(log_probs[k])
        entropy -= prob * min(max(log_probs[k], low), high)
        if low <= log_probs[k] <= high:
            inside_mass += prob
    sign = np.float64(entropy_sign)
    action_inside = low <= log_probs[action] <= high
    for k in range(num_actions):
        prob = math.exp(log_probs[k])
        inside = 1.0 if low <= log_probs[k] <= high else 0.0
        grad = -sign * prob * (min(max(log_probs[k], low), high) + entropy) - sign * prob * (inside - inside_mass)
        if action_inside:
            grad += (1.0 if k == action else 0.0) - prob
        gradients[out_at + k] = np.float32(grad)
    return np.float32(entropy)


@_kernel
def actor_critic_update(critic: np.ndarray, critic_layers: np.ndarray, critic_workspace: np.ndarray,
                        actor: np.ndarray, actor_layers: np.ndarray, actor_workspace: np.ndarray,
                        num_hidden: int, layer_norm: bool, x: np.ndarray, next_x: np.ndarray,
                        continuous: Any, action_vector: np.ndarray, action_index: int,
                        reward: np.float32, discount: np.float32, entropy_coef: np.float32,
                        clamp_eps: np.float64, reuse_actor_forward: bool, rule: int, critic_settings: np.ndarray,
                        actor_settings: np.ndarray, critic_bias_correction: np.float32,
                        actor_bias_correction: np.float32, reset: bool, scratch: np.ndarray, conv: Any,
                        ) -> tuple[np.float32, np.float32, np.float32, np.float32, np.float32, np.float32]:
    """Stream AC(λ) (PAPER §2): critic trace of ∇v(s), actor trace of
    ∇[log π(a|s) + τ·sign(δ)·H(π(·|s))], both stepped with the critic's δ. ``continuous``:
    True for the Gaussian policy (``action_vector`` is the action), None for the categorical
    one (``action_index``; the Gaussian code is then not compiled).

    Returns (δ, critic α̂, critic Σ‖z‖₁, actor α̂, actor Σ‖z‖₁, H)."""
    forward_pair(critic, critic_layers, num_hidden, layer_norm, critic_workspace, x, next_x, False, False, conv)
    value_at = critic_layers[num_hidden, PRE_AT]
    value, next_value = critic_workspace[0, value_at], critic_workspace[1, value_at]
    td_error = td_error_of(reward, discount, next_value, value)
    if not math.isfinite(td_error):  # refused before it reaches traces or weights (the caller raises)
        return td_error, NAN, NAN, NAN, NAN, NAN

    activations = actor_workspace[0]
    if not (reuse_actor_forward and same_input(actor_layers, x, activations)):
        forward(actor[WEIGHTS], actor_layers, num_hidden, layer_norm, x, activations, conv)
    gradients = actor_workspace[2]
    out_at = actor_layers[num_hidden, PRE_AT]
    sign = ONE if td_error > ZERO else (-ONE if td_error < ZERO else ZERO)
    entropy_sign = entropy_coef * sign
    if continuous is not None:
        entropy = _gaussian_objective_gradient(activations, gradients, out_at, actor_layers[num_hidden, N_OUT],
                                               action_vector, entropy_sign)
    else:
        entropy = _categorical_objective_gradient(activations, gradients, out_at, actor_layers[num_hidden, N_OUT],
                                                  action_index, entropy_sign, scratch, clamp_eps)

    critic_gradients = critic_workspace[2]
    _zero(critic_gradients, value_at, critic_layers[num_hidden, N_OUT])
    critic_gradients[value_at] = ONE
    # critic, then actor: one call site each for the trace and the step (compiled once, not twice)
    steps = np.empty(2, dtype=np.float32)
    norms = np.empty(2, dtype=np.float32)
    for k in range(2):
        state, layers, workspace = (critic, critic_layers, critic_workspace) if k == 0 else (
            actor, actor_layers, actor_workspace)
        settings, bias_correction = ((critic_settings, critic_bias_correction) if k == 0
                                     else (actor_settings, actor_bias_correction))
        norms[k] = accumulate_trace(state[WEIGHTS], state[TRACE], layers, num_hidden, layer_norm, workspace[0],
                                    workspace[2], settings[TRACE_DECAY], conv)
        steps[k] = optimizer_step(state, rule, settings, td_error, bias_correction, reset, norms[k])
    return td_error, steps[0], norms[0], steps[1], norms[1], entropy

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

Numerics. Operations that torch performs as single float32 elementwise operations (trace decay
and accumulation, the step, AdaptiveObGD's second moment, the TD error, LeakyReLU, the
Gaussian head) are written in the same float32 order, so they give identical results on
identical inputs. Reductions and composite kernels whose internal order in torch is not
specified (GEMM, LayerNorm, log-softmax, norms) are computed in float64 and rounded once to
float32: the difference to torch is then torch's own float32 rounding error.

Sign convention (PAPER §1.1): the trace accumulates the gradient of the quantity being
learned (``v(s)``, ``Q(s, a)`` or the actor's objective) and the step is ``w ← w + α̂ δ z``.
"""

from __future__ import annotations

import math

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


# ============================================================================================
# Reductions (float64 accumulators; arguments are 1-D views)
# ============================================================================================

@_reduction
def _matrix_vector(matrix: np.ndarray, vector: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """out = matrix·vector + bias, accumulated in float64, each output rounded once to float32."""
    vector64 = vector.astype(np.float64)
    for i in range(matrix.shape[0]):
        total = 0.0
        for j in range(matrix.shape[1]):
            total += np.float64(matrix[i, j]) * vector64[j]
        out[i] = np.float32(total + np.float64(bias[i]))


@_reduction
def _matrix_vector_pair(matrix: np.ndarray, vector: np.ndarray, other: np.ndarray, bias: np.ndarray,
                        out: np.ndarray, other_out: np.ndarray) -> None:
    """_matrix_vector for two inputs (s and s') in one pass over the matrix."""
    vector64, other64 = vector.astype(np.float64), other.astype(np.float64)
    for i in range(matrix.shape[0]):
        total = 0.0
        other_total = 0.0
        for j in range(matrix.shape[1]):
            weight = np.float64(matrix[i, j])
            total += weight * vector64[j]
            other_total += weight * other64[j]
        out[i] = np.float32(total + np.float64(bias[i]))
        other_out[i] = np.float32(other_total + np.float64(bias[i]))


@_reduction
def l1_norm(x: np.ndarray) -> np.float32:
    """Σ|x| (accumulated in float64)."""
    total = 0.0
    for i in range(x.shape[0]):
        total += abs(np.float64(x[i]))
    return np.float32(total)


@_reduction
def _layer_norm_statistics(x: np.ndarray) -> tuple[float, float]:
    """Mean and 1/√(biased variance + eps) of x, two-pass in float64 (F.layer_norm's moments)."""
    n = x.shape[0]
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
def _layer_norm_gradient_sums(pre: np.ndarray, grad_normalized: np.ndarray, mean: float,
                              rstd: float) -> tuple[float, float]:
    """Σ dy and Σ dy·x̂ in float64, x̂ = (pre − mean)·rstd."""
    sum_dy = 0.0
    sum_dy_normalized = 0.0
    for j in range(pre.shape[0]):
        dy = np.float64(grad_normalized[j])
        sum_dy += dy
        sum_dy_normalized += dy * ((np.float64(pre[j]) - mean) * rstd)
    return sum_dy, sum_dy_normalized


# ============================================================================================
# Forward
# ============================================================================================

@_kernel
def _views(layers: np.ndarray, layer: int, buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (input, Linear output) slices of a workspace row for one layer."""
    in_at, pre_at = layers[layer, IN_AT], layers[layer, PRE_AT]
    return buffer[in_at:in_at + layers[layer, N_IN]], buffer[pre_at:pre_at + layers[layer, N_OUT]]


@_kernel
def _matrix(flat: np.ndarray, layers: np.ndarray, layer: int) -> np.ndarray:
    """The layer's weight (or its trace) as an [out, in] view of a flat parameter vector."""
    n_in, n_out, w_at = layers[layer, N_IN], layers[layer, N_OUT], layers[layer, W_AT]
    return flat[w_at:w_at + n_out * n_in].reshape((n_out, n_in))


@_kernel
def _bias(flat: np.ndarray, layers: np.ndarray, layer: int) -> np.ndarray:
    """The layer's bias (or its trace): one entry per output feature, or per channel of a conv."""
    b_at = layers[layer, B_AT]
    size = layers[layer, N_OUT]
    if layers[layer, KIND] == CONV:
        size //= layers[layer, H_OUT] * layers[layer, W_OUT]
    return flat[b_at:b_at + size]


@_kernel
def _linear(weights: np.ndarray, layers: np.ndarray, layer: int, activations: np.ndarray) -> None:
    """activations[pre] = W · activations[in] + b."""
    inputs, outputs = _views(layers, layer, activations)
    _matrix_vector(_matrix(weights, layers, layer), inputs, _bias(weights, layers, layer), outputs)


@_kernel
def _patches(inputs: np.ndarray, kernel: int, stride: int, height: int, width: int) -> np.ndarray:
    """im2col: float64 [C·k·k, H_out·W_out]; row (c, i, j) holds in[c, y·stride + i, x·stride + j]
    for every output position (y, x), in the order of a conv weight's flattened [C, k, k]."""
    patches = np.empty((inputs.shape[0] * kernel * kernel, height * width))
    for c in range(inputs.shape[0]):
        for i in range(kernel):
            for j in range(kernel):
                row = patches[(c * kernel + i) * kernel + j]
                for y in range(height):
                    for x in range(width):
                        row[y * width + x] = np.float64(inputs[c, y * stride + i, x * stride + j])
    return patches


@_kernel
def _convolve(weight: np.ndarray, bias: np.ndarray, patches: np.ndarray, out: np.ndarray) -> None:
    """out[o, p] = b[o] + Σ_r W[o, r]·patches[r, p] (a conv as a product with the im2col
    patches), accumulated in float64 and rounded once to float32; the loop over positions p is
    innermost, so it vectorizes without reassociation."""
    total = np.empty(patches.shape[1])
    for o in range(out.shape[0]):
        total[:] = np.float64(bias[o])
        for r in range(patches.shape[0]):
            w = np.float64(weight[o, r])
            for p in range(patches.shape[1]):
                total[p] += w * patches[r, p]
        for p in range(patches.shape[1]):
            out[o, p] = np.float32(total[p])


@_kernel
def _conv_parts(flat: np.ndarray, layers: np.ndarray, layer: int, buffer: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A conv layer's weight (or its trace) as [C_out, C_in·k·k], its input in a workspace row
    as [C_in, H, W] and its output slot there as [C_out, H_out·W_out]."""
    channels_in, kernel = layers[layer, C_IN], layers[layer, KERNEL]
    positions = layers[layer, H_OUT] * layers[layer, W_OUT]
    channels_out, fan_in = layers[layer, N_OUT] // positions, channels_in * kernel * kernel
    w_at = layers[layer, W_AT]
    inputs, outputs = _views(layers, layer, buffer)
    return (flat[w_at:w_at + channels_out * fan_in].reshape((channels_out, fan_in)),
            inputs.reshape((channels_in, layers[layer, H_IN], layers[layer, W_IN])),
            outputs.reshape((channels_out, positions)))


@_kernel
def _conv_patches(layers: np.ndarray, layer: int, inputs: np.ndarray) -> np.ndarray:
    return _patches(inputs, layers[layer, KERNEL], layers[layer, STRIDE], layers[layer, H_OUT], layers[layer, W_OUT])


@_kernel
def _conv(weights: np.ndarray, layers: np.ndarray, layer: int, activations: np.ndarray) -> None:
    """activations[pre] = Conv2d(activations[in]) (valid padding)."""
    weight, inputs, outputs = _conv_parts(weights, layers, layer, activations)
    _convolve(weight, _bias(weights, layers, layer), _conv_patches(layers, layer, inputs), outputs)


@_kernel
def _layer(weights: np.ndarray, layers: np.ndarray, layer: int, activations: np.ndarray) -> None:
    """One Linear or Conv2d layer's output from its input, in a workspace row."""
    if layers[layer, KIND] == CONV:
        _conv(weights, layers, layer, activations)
    else:
        _linear(weights, layers, layer, activations)


@_kernel
def _normalize_and_activate(layers: np.ndarray, layer: int, layer_norm: bool, activations: np.ndarray) -> None:
    """activations[act] = LeakyReLU(LayerNorm(activations[pre])) (PAPER §1.4)."""
    n, act_at = layers[layer, N_OUT], layers[layer, ACT_AT]
    pre = _views(layers, layer, activations)[1]
    hidden = activations[act_at:act_at + n]
    mean, rstd = _layer_norm_statistics(pre) if layer_norm else (0.0, 1.0)
    for j in range(n):
        normalized = np.float32((np.float64(pre[j]) - mean) * rstd) if layer_norm else pre[j]
        hidden[j] = normalized if normalized > ZERO else normalized * LEAKY_RELU_SLOPE


@_kernel
def forward(weights: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, x: np.ndarray,
            activations: np.ndarray) -> None:
    """Run the network on one input ``x``; every intermediate lands in ``activations``."""
    _views(layers, 0, activations)[0][:] = x
    for layer in range(num_hidden):
        _layer(weights, layers, layer, activations)
        _normalize_and_activate(layers, layer, layer_norm, activations)
    for head in range(num_hidden, layers.shape[0]):
        _linear(weights, layers, head, activations)


@_kernel
def same_input(layers: np.ndarray, x: np.ndarray, activations: np.ndarray) -> bool:
    """Whether ``activations`` already hold a forward pass of exactly ``x``."""
    cached = _views(layers, 0, activations)[0]
    for j in range(cached.shape[0]):  # noqa: SIM110 - a plain loop compiles in numba, all(<genexpr>) does not
        if cached[j] != x[j]:
            return False
    return True


# ============================================================================================
# Backward, fused with the trace update z ← γλ z + g  (PAPER §1.1)
# ============================================================================================

@_kernel
def _linear_backward(weights: np.ndarray, trace: np.ndarray, layers: np.ndarray, layer: int,
                     activations: np.ndarray, gradients: np.ndarray, trace_decay: np.float32,
                     propagate: bool) -> None:
    """For one Linear layer with output gradient g = gradients[pre]: the fused trace update
    ``z_W ← decay·z_W + g xᵀ``, ``z_b ← decay·z_b + g`` — elementwise float32, as torch's
    ``_foreach_mul_`` then ``_foreach_add_`` of the gradient, which torch rounds to float32 —
    and, when ``propagate``, ``gradients[in] += Wᵀ g`` (added: several heads share one input;
    the caller zeroes it), accumulated in float64."""
    inputs = _views(layers, layer, activations)[0]
    input_gradient, output_gradient = _views(layers, layer, gradients)
    weight, weight_trace = _matrix(weights, layers, layer), _matrix(trace, layers, layer)
    bias_trace = _bias(trace, layers, layer)
    n_out, n_in = weight.shape
    accumulated = np.zeros(n_in if propagate else 0)
    for i in range(n_out):
        grad = output_gradient[i]
        for j in range(n_in):
            weight_trace[i, j] = weight_trace[i, j] * trace_decay + grad * inputs[j]
        bias_trace[i] = bias_trace[i] * trace_decay + grad
        if propagate:
            grad64 = np.float64(grad)
            for j in range(n_in):
                accumulated[j] += np.float64(weight[i, j]) * grad64
    for j in range(accumulated.shape[0]):
        input_gradient[j] += np.float32(accumulated[j])


@_reduction
def _convolution_gradient(output_gradient: np.ndarray, patches: np.ndarray, weight_gradient: np.ndarray,
                          bias_gradient: np.ndarray) -> None:
    """∂/∂W[o, r] = Σ_p g[o, p]·patches[r, p] and ∂/∂b[o] = Σ_p g[o, p], accumulated in float64,
    each rounded once to float32."""
    for o in range(weight_gradient.shape[0]):
        bias_total = 0.0
        for p in range(output_gradient.shape[1]):
            bias_total += np.float64(output_gradient[o, p])
        bias_gradient[o] = np.float32(bias_total)
        for r in range(weight_gradient.shape[1]):
            total = 0.0
            for p in range(output_gradient.shape[1]):
                total += np.float64(output_gradient[o, p]) * patches[r, p]
            weight_gradient[o, r] = np.float32(total)


@_kernel
def _conv_backward(trace: np.ndarray, layers: np.ndarray, layer: int, activations: np.ndarray,
                   gradients: np.ndarray, trace_decay: np.float32) -> None:
    """The fused trace update of a conv layer, ``z ← decay·z + g`` (g rounded to float32 first,
    as torch's conv backward gives it). No gradient reaches the observation."""
    weight_trace, inputs, _ = _conv_parts(trace, layers, layer, activations)
    output_gradient = _conv_parts(trace, layers, layer, gradients)[2]
    weight_gradient = np.empty(weight_trace.shape, dtype=np.float32)
    bias_gradient = np.empty(weight_trace.shape[0], dtype=np.float32)
    _convolution_gradient(output_gradient, _conv_patches(layers, layer, inputs), weight_gradient, bias_gradient)
    for o in range(weight_trace.shape[0]):
        for r in range(weight_trace.shape[1]):
            weight_trace[o, r] = weight_trace[o, r] * trace_decay + weight_gradient[o, r]
    bias_trace = _bias(trace, layers, layer)
    for o in range(bias_trace.shape[0]):
        bias_trace[o] = bias_trace[o] * trace_decay + bias_gradient[o]


@_kernel
def _activation_backward(layers: np.ndarray, layer: int, layer_norm: bool, activations: np.ndarray,
                         gradients: np.ndarray) -> None:
    """gradients[pre] from gradients[act] through LeakyReLU and the parameter-free LayerNorm:
    ``dx = rstd·(dy − mean(dy) − x̂·mean(dy·x̂))`` in float64."""
    n, act_at = layers[layer, N_OUT], layers[layer, ACT_AT]
    hidden, grad_hidden = activations[act_at:act_at + n], gradients[act_at:act_at + n]
    pre, grad_pre = _views(layers, layer, activations)[1], _views(layers, layer, gradients)[1]
    # LeakyReLU'(y) = 1 if y > 0 else slope; its output is > 0 exactly when its input is.
    for j in range(n):
        if not hidden[j] > ZERO:
            grad_hidden[j] = grad_hidden[j] * LEAKY_RELU_SLOPE
    if not layer_norm:
        grad_pre[:] = grad_hidden
        return
    mean, rstd = _layer_norm_statistics(pre)
    sum_dy, sum_dy_normalized = _layer_norm_gradient_sums(pre, grad_hidden, mean, rstd)
    mean_dy, mean_dy_normalized = sum_dy / n, sum_dy_normalized / n
    for j in range(n):
        normalized = (np.float64(pre[j]) - mean) * rstd
        grad_pre[j] = np.float32(rstd * (np.float64(grad_hidden[j]) - mean_dy - normalized * mean_dy_normalized))


@_kernel
def accumulate_trace(weights: np.ndarray, trace: np.ndarray, layers: np.ndarray, num_hidden: int,
                     layer_norm: bool, activations: np.ndarray, gradients: np.ndarray,
                     trace_decay: np.float32) -> np.float32:
    """``z ← decay·z + ∇f`` where ``f = Σ_k gradients[out_k]·out_k`` for the sample whose
    forward pass is in ``activations`` (the caller fills the heads' slots of ``gradients``).
    Returns ``Σ‖z‖₁`` over all of the network's tensors, after the update."""
    last = num_hidden - 1
    _views(layers, num_hidden, gradients)[0][:] = ZERO  # the heads' shared input
    for head in range(num_hidden, layers.shape[0]):
        _linear_backward(weights, trace, layers, head, activations, gradients, trace_decay, True)
    for layer in range(last, -1, -1):
        _activation_backward(layers, layer, layer_norm, activations, gradients)
        if layers[layer, KIND] == CONV:  # only ever the first layer
            _conv_backward(trace, layers, layer, activations, gradients, trace_decay)
            continue
        propagate = layer > 0  # the input of the first layer is the observation: no gradient
        if propagate:
            _views(layers, layer, gradients)[0][:] = ZERO
        _linear_backward(weights, trace, layers, layer, activations, gradients, trace_decay, propagate)
    return l1_norm(trace)


# ============================================================================================
# The optimizer step (PAPER §1.1 ObGD, §1.2 AdaptiveObGD; traced SGD = no bound)
# ============================================================================================

@_kernel
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
    for i in range(weights.shape[0]):
        weights[i] = weights[i] + direction[i] * scaled_step


@_kernel
def optimizer_step(state: np.ndarray, rule: int, settings: np.ndarray, td_error: np.float32,
                   bias_correction: np.float32, reset: bool, trace_norm: np.float32) -> np.float32:
    """One step ``w ← w + α̂ δ d`` after the trace update (whose ``Σ‖z‖₁`` is ``trace_norm``);
    returns α̂.

    ObGD: ``d = z``, ``M = α κ max(|δ|,1) ‖z‖₁``, ``α̂ = α / max(M, 1)``.
    AdaptiveObGD: d is the normalized trace (see _normalized_direction), M uses ‖d‖₁.
    Traced SGD: ``d = z``, ``α̂ = α``. The trace is zeroed afterwards when ``reset``.
    """
    weights, trace = state[WEIGHTS], state[TRACE]
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
    _apply_step(weights, direction, step_size * td_error)
    if reset:
        trace[:] = ZERO
    return step_size


# ============================================================================================
# Whole updates, one call each
# ============================================================================================

@_kernel
def predict(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, workspace: np.ndarray,
            x: np.ndarray) -> np.ndarray:
    """The heads' outputs for one input (a view into workspace row 0)."""
    forward(state[WEIGHTS], layers, num_hidden, layer_norm, x, workspace[0])
    out_at = layers[num_hidden, PRE_AT]
    return workspace[0, out_at:out_at + _num_outputs(layers, num_hidden)]


@_kernel
def forward_pair(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
                 workspace: np.ndarray, x: np.ndarray, next_x: np.ndarray) -> None:
    """Forward passes of s (workspace row 0) and s' (row 1) with the same weights, reading
    each weight matrix once."""
    weights, activations, next_activations = state[WEIGHTS], workspace[0], workspace[1]
    _views(layers, 0, activations)[0][:] = x
    _views(layers, 0, next_activations)[0][:] = next_x
    for layer in range(layers.shape[0]):
        if layers[layer, KIND] == CONV:
            _conv(weights, layers, layer, activations)
            _conv(weights, layers, layer, next_activations)
        else:
            inputs, outputs = _views(layers, layer, activations)
            next_inputs, next_outputs = _views(layers, layer, next_activations)
            _matrix_vector_pair(_matrix(weights, layers, layer), inputs, next_inputs,
                                _bias(weights, layers, layer), outputs, next_outputs)
        if layer < num_hidden:
            _normalize_and_activate(layers, layer, layer_norm, activations)
            _normalize_and_activate(layers, layer, layer_norm, next_activations)


@_kernel
def _num_outputs(layers: np.ndarray, num_hidden: int) -> int:
    total = 0
    for head in range(num_hidden, layers.shape[0]):
        total += layers[head, N_OUT]
    return total


@_kernel
def _clear_output_gradients(layers: np.ndarray, num_hidden: int, gradients: np.ndarray) -> int:
    out_at = layers[num_hidden, PRE_AT]
    for k in range(_num_outputs(layers, num_hidden)):
        gradients[out_at + k] = ZERO
    return out_at


@_kernel
def learn_output(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, workspace: np.ndarray,
                 output_index: int, rule: int, settings: np.ndarray, td_error: np.float32,
                 bias_correction: np.float32, reset: bool) -> tuple[np.float32, np.float32]:
    """Trace of ∇(output ``output_index`` at s) — ``v(s)`` or ``Q(s, a)`` — then the step.

    Uses the forward pass of s already in workspace row 0 (from ``forward_pair``)."""
    gradients = workspace[2]
    out_at = _clear_output_gradients(layers, num_hidden, gradients)
    gradients[out_at + output_index] = ONE
    trace_norm = accumulate_trace(state[WEIGHTS], state[TRACE], layers, num_hidden, layer_norm, workspace[0],
                                  gradients, settings[TRACE_DECAY])
    return optimizer_step(state, rule, settings, td_error, bias_correction, reset, trace_norm), trace_norm


@_kernel
def td_error_of(reward: np.float32, discount: np.float32, next_value: np.float32, value: np.float32) -> np.float32:
    """``δ = r + γ(1−done)·v' − v`` in the float32 order of the autograd agents."""
    return (reward + discount * next_value) - value


@_kernel
def value_update(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, workspace: np.ndarray,
                 x: np.ndarray, next_x: np.ndarray, reward: np.float32, discount: np.float32, rule: int,
                 settings: np.ndarray, bias_correction: np.float32,
                 reset: bool) -> tuple[np.float32, np.float32, np.float32, np.float32]:
    """Stream TD(λ) (PAPER §2): returns (δ, α̂, Σ‖z‖₁, v(s))."""
    forward_pair(state, layers, num_hidden, layer_norm, workspace, x, next_x)
    out_at = layers[num_hidden, PRE_AT]
    value, next_value = workspace[0, out_at], workspace[1, out_at]
    td_error = td_error_of(reward, discount, next_value, value)
    if not np.isfinite(td_error):  # refused before it reaches traces or weights (the caller raises)
        return td_error, NAN, NAN, value
    step_size, trace_norm = learn_output(state, layers, num_hidden, layer_norm, workspace, 0, rule, settings,
                                         td_error, bias_correction, reset)
    return td_error, step_size, trace_norm, value


# -- policies (PAPER §2, Stream AC) -----------------------------------------------------------

@_kernel
def softplus(x: np.float32) -> np.float32:
    """F.softplus with β = 1, threshold 20."""
    if x > SOFTPLUS_THRESHOLD:
        return x
    return np.float32(math.log1p(np.float32(math.exp(x))))


@_kernel
def policy_distribution(state: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
                        workspace: np.ndarray, x: np.ndarray, continuous: bool, reuse_forward: bool,
                        distribution: np.ndarray) -> None:
    """Gaussian: distribution = [mean, std]; categorical: distribution = softmax(logits).

    With ``reuse_forward`` the pass in workspace row 0 is kept when it is of the same ``x``."""
    activations = workspace[0]
    if not (reuse_forward and same_input(layers, x, activations)):
        forward(state[WEIGHTS], layers, num_hidden, layer_norm, x, activations)
    out_at = layers[num_hidden, PRE_AT]
    if continuous:
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


@_kernel
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


@_kernel
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


@_kernel
def _categorical_objective_gradient(activations: np.ndarray, gradients: np.ndarray, out_at: int,
                                    num_actions: int, action: int, entropy_sign: np.float32,
                                    log_probs: np.ndarray) -> np.float32:
    """Fill the logits' gradients of ``log π(a) + entropy_sign·H``, H = −Σ π log π; return H.

    With g_k = ∂/∂log π_k = [k = a] − entropy_sign·π_k·(1 + log π_k), the log-softmax
    backward gives ∂/∂l_k = g_k − π_k Σ_j g_j. Float64 throughout (``log_probs`` is a float64
    scratch array): near-deterministic policies make these differences cancel."""
    _log_softmax(activations, out_at, num_actions, log_probs)
    entropy = 0.0
    for k in range(num_actions):
        entropy -= math.exp(log_probs[k]) * log_probs[k]
    sign = np.float64(entropy_sign)
    total = 0.0
    for k in range(num_actions):
        prob = math.exp(log_probs[k])
        grad = -sign * prob * (1.0 + log_probs[k])
        if k == action:
            grad += 1.0
        total += grad
    for k in range(num_actions):
        prob = math.exp(log_probs[k])
        grad = -sign * prob * (1.0 + log_probs[k])
        if k == action:
            grad += 1.0
        gradients[out_at + k] = np.float32(grad - prob * total)
    return np.float32(entropy)


@_kernel
def actor_critic_update(critic: np.ndarray, critic_layers: np.ndarray, critic_workspace: np.ndarray,
                        actor: np.ndarray, actor_layers: np.ndarray, actor_workspace: np.ndarray,
                        num_hidden: int, layer_norm: bool, x: np.ndarray, next_x: np.ndarray,
                        continuous: bool, action_vector: np.ndarray, action_index: int,
                        reward: np.float32, discount: np.float32, entropy_coef: np.float32,
                        reuse_actor_forward: bool, rule: int, critic_settings: np.ndarray,
                        actor_settings: np.ndarray, critic_bias_correction: np.float32,
                        actor_bias_correction: np.float32, reset: bool, scratch: np.ndarray,
                        ) -> tuple[np.float32, np.float32, np.float32, np.float32, np.float32, np.float32]:
    """Stream AC(λ) (PAPER §2): critic trace of ∇v(s), actor trace of
    ∇[log π(a|s) + τ·sign(δ)·H(π(·|s))], both stepped with the critic's δ.

    Returns (δ, critic α̂, critic Σ‖z‖₁, actor α̂, actor Σ‖z‖₁, H)."""
    forward_pair(critic, critic_layers, num_hidden, layer_norm, critic_workspace, x, next_x)
    value_at = critic_layers[num_hidden, PRE_AT]
    value, next_value = critic_workspace[0, value_at], critic_workspace[1, value_at]
    td_error = td_error_of(reward, discount, next_value, value)
    if not np.isfinite(td_error):  # refused before it reaches traces or weights (the caller raises)
        return td_error, NAN, NAN, NAN, NAN, NAN

    activations = actor_workspace[0]
    if not (reuse_actor_forward and same_input(actor_layers, x, activations)):
        forward(actor[WEIGHTS], actor_layers, num_hidden, layer_norm, x, activations)
    gradients = actor_workspace[2]
    out_at = actor_layers[num_hidden, PRE_AT]
    sign = ONE if td_error > ZERO else (-ONE if td_error < ZERO else ZERO)
    entropy_sign = entropy_coef * sign
    if continuous:
        entropy = _gaussian_objective_gradient(activations, gradients, out_at, actor_layers[num_hidden, N_OUT],
                                               action_vector, entropy_sign)
    else:
        entropy = _categorical_objective_gradient(activations, gradients, out_at, actor_layers[num_hidden, N_OUT],
                                                  action_index, entropy_sign, scratch)

    critic_step, critic_norm = learn_output(critic, critic_layers, num_hidden, layer_norm, critic_workspace, 0,
                                            rule, critic_settings, td_error, critic_bias_correction, reset)
    actor_norm = accumulate_trace(actor[WEIGHTS], actor[TRACE], actor_layers, num_hidden, layer_norm, activations,
                                  gradients, actor_settings[TRACE_DECAY])
    actor_step = optimizer_step(actor, rule, actor_settings, td_error, actor_bias_correction, reset, actor_norm)
    return td_error, critic_step, critic_norm, actor_step, actor_norm, entropy

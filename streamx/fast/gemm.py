"""numba kernels for the Atari conv net (PAPER §3) that call torch's own BLAS (MKL) for the
matrix products: one compiled call per forward pass and one per backward pass.

On the Atari net an update is ≈ 10 M multiply-adds (two forward passes, one backward), which
a plain numba loop nest does several times slower than MKL's SGEMM; but chaining torch
operations for them costs ≈ 70 small calls per step (im2col gathers, layer norms, activations,
their backward, ‖z‖₁), whose overhead outweighs the arithmetic. Here each pass is ONE numba
call that runs the non-GEMM work in compiled loops and calls SGEMM directly:

* a conv layer is ``pre = W · patchesᵀ + b`` with im2row patches ``[positions, C·k·k]``
  (contiguous runs of k input pixels, copied rather than gathered by an index), its weight
  gradient ``z ← γλ z + G · patches`` is ONE SGEMM with β = γλ (the trace decay and the
  accumulation fused), and the input gradient is ``Gᵀ W`` scattered back (col2im);
* Linear layers, LayerNorm, LeakyReLU and their backward are the MLP kernels of
  :mod:`streamx.fast.kernels` (same table columns and workspace layout);
* ‖z‖₁ is summed per tensor in float64 and the total rounded once, as the autograd
  optimizer sums it, so ObGD's bound sees the same float32 value.

SGEMM is MKL's ``sgemm_``, which torch's Linux x86-64 wheels link statically and export. Its
address is registered with LLVM under a fixed name (after a small product through ctypes
came out right), so the compiled kernels reference it by name and stay cacheable across
runs. :data:`AVAILABLE` is False where torch exports no ``sgemm_`` (other platforms / BLAS
builds); :mod:`streamx.fast.conv` then uses its torch-kernel network instead. MKL runs with
torch's thread setting (one thread per run by default; streamx sets it).

Table and workspace: as :mod:`streamx.fast.kernels` (``W_AT … W_OUT``), plus ``PATCH_AT``
(workspace offset of a conv layer's patches), ``FAN_IN`` (C·k·k or in_features) and
``POSITIONS`` (H_out·W_out; 1 for Linear). Any stack of square, unpadded conv layers followed
by Linear layers is allowed. Workspace rows 0 and 1 each hold one forward pass (the caller
decides which is the kept pass of s); row 2 holds the gradients, at the same offsets as the
activations of the pass they belong to.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np
import torch
from numba import njit, types

from streamx.fast import kernels
from streamx.fast.kernels import (
    B_AT,
    C_IN,
    CONV,
    H_IN,
    H_OUT,
    IN_AT,
    KERNEL,
    KIND,
    N_IN,
    N_OUT,
    PRE_AT,
    STRIDE,
    W_AT,
    W_IN,
    W_OUT,
    ZERO,
)

__all__ = ["AVAILABLE", "REASON", "backward", "forward", "forward_kept"]

PATCH_AT = kernels.LAYER_COLUMNS  # workspace offset of a conv layer's patches [positions, fan_in]
FAN_IN = PATCH_AT + 1
POSITIONS = PATCH_AT + 2
LAYER_COLUMNS = PATCH_AT + 3

_SYMBOL = "streamx_torch_sgemm"


TORCH_LIBRARY = os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so")


def _register_sgemm() -> tuple[bool, str]:
    """Register the address of torch's ``sgemm_`` with LLVM as :data:`_SYMBOL`."""
    if not os.path.isfile(TORCH_LIBRARY):
        return False, f"no {os.path.basename(TORCH_LIBRARY)} in the torch installation (not a Linux build)"
    try:
        function = ctypes.CDLL(TORCH_LIBRARY).sgemm_
    except (OSError, AttributeError):
        return False, "torch's libtorch_cpu exports no sgemm_ (not an MKL build)"
    if not _sgemm_works(function):
        return False, "torch's sgemm_ does not take the standard 32-bit Fortran interface"
    import llvmlite.binding as llvm

    llvm.add_symbol(_SYMBOL, ctypes.cast(function, ctypes.c_void_p).value)
    return True, "torch's MKL sgemm_"


def _sgemm_works(function: Any) -> bool:
    """Whether ``function`` computes a small product with transposes as the Fortran SGEMM with
    32-bit integers does (a guard against another integer width or calling convention)."""
    a = np.arange(1.0, 7.0, dtype=np.float32)  # column-major 3×2, used transposed: 2×3
    b = np.arange(1.0, 13.0, dtype=np.float32)  # column-major 3×4
    c = np.full(8, 1.0, dtype=np.float32)  # column-major 2×4, β = 0.5
    expected = (a.reshape(2, 3) @ b.reshape(4, 3).T).T.reshape(-1) + np.float32(0.5)

    def ref(value: Any) -> Any:
        return ctypes.byref(value)

    def pointer(array: np.ndarray) -> Any:
        return array.ctypes.data_as(ctypes.c_void_p)

    function.restype = None
    function(ref(ctypes.c_char(b"T")), ref(ctypes.c_char(b"N")), ref(ctypes.c_int(2)), ref(ctypes.c_int(4)),
             ref(ctypes.c_int(3)), ref(ctypes.c_float(1.0)), pointer(a), ref(ctypes.c_int(3)), pointer(b),
             ref(ctypes.c_int(3)), ref(ctypes.c_float(0.5)), pointer(c), ref(ctypes.c_int(2)))
    return bool(np.array_equal(c, expected))


AVAILABLE, REASON = _register_sgemm()

_pointer = types.voidptr
# Fortran BLAS: every argument by reference (transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
_sgemm = types.ExternalFunction(_SYMBOL, types.void(*([_pointer] * 13)))

_kernel = njit(cache=True, error_model="numpy")
_inline = njit(cache=True, error_model="numpy", inline="always")

_NO, _TRANSPOSE = ord("N"), ord("T")


@_inline
def _gemm(transpose_a: int, transpose_b: int, m: int, n: int, k: int, a: np.ndarray, lda: int, b: np.ndarray,
          ldb: int, beta: np.float32, c: np.ndarray, ldc: int) -> None:
    """Column-major ``C[m, n] = op(A)[m, k] · op(B)[k, n] + β C`` (α = 1; β = 0 does not read
    C). A row-major array ``X[r, s]`` is the column-major matrix ``Xᵀ`` with leading
    dimension s."""
    ints = np.empty(7, dtype=np.int32)
    ints[0], ints[1], ints[2], ints[3], ints[4], ints[5], ints[6] = transpose_a, transpose_b, m, n, k, lda, ldb
    ldc_scalars = np.empty(1, dtype=np.int32)
    ldc_scalars[0] = ldc
    floats = np.empty(2, dtype=np.float32)
    floats[0], floats[1] = np.float32(1.0), beta
    # numba types calling a Type as building a signature; in compiled code it calls the native function
    _sgemm(ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes, ints[3:].ctypes, ints[4:].ctypes,  # type: ignore[call-overload]
           floats[0:].ctypes, a.ctypes, ints[5:].ctypes, b.ctypes, ints[6:].ctypes, floats[1:].ctypes,
           c.ctypes, ldc_scalars.ctypes)


# ============================================================================================
# Forward
# ============================================================================================

@_kernel
def _patches(layers: np.ndarray, layer: int, buffer: np.ndarray, to_patches: bool) -> None:
    """im2row and its transpose for a conv layer. ``to_patches``: buffer[patches][p, (c, i, j)] =
    buffer[in][c, y·s + i, x·s + j] for output position p = (y, x), each (p, c, i) a contiguous
    run of k input pixels. Otherwise (col2im, on gradients): buffer[in] = the sum, for each
    input pixel, of the patch entries that read it. One function for both (a run-time flag):
    one compilation."""
    channels, height, width = layers[layer, C_IN], layers[layer, H_IN], layers[layer, W_IN]
    kernel, stride = layers[layer, KERNEL], layers[layer, STRIDE]
    height_out, width_out = layers[layer, H_OUT], layers[layer, W_OUT]
    fan_in = layers[layer, FAN_IN]
    image = buffer[layers[layer, IN_AT]:layers[layer, IN_AT] + channels * height * width]
    patches = buffer[layers[layer, PATCH_AT]:layers[layer, PATCH_AT] + height_out * width_out * fan_in]
    if not to_patches:
        for j in range(image.shape[0]):
            image[j] = ZERO
    for y in range(height_out):
        for x in range(width_out):
            at = (y * width_out + x) * fan_in
            for c in range(channels):
                for i in range(kernel):
                    start = (c * height + y * stride + i) * width + x * stride
                    pixels = image[start:start + kernel]
                    entries = patches[at:at + kernel]
                    if to_patches:
                        for j in range(kernel):
                            entries[j] = pixels[j]
                    else:
                        for j in range(kernel):
                            pixels[j] += entries[j]
                    at += kernel


@_inline
def _conv_forward(weights: np.ndarray, layers: np.ndarray, layer: int, row: np.ndarray) -> None:
    """row[pre][o, p] = b[o] + Σ_q W[o, q]·patches[p, q] (one SGEMM onto the bias)."""
    channels_out = layers[layer, N_OUT] // layers[layer, POSITIONS]
    positions, fan_in = layers[layer, POSITIONS], layers[layer, FAN_IN]
    w_at, b_at, pre_at, patch_at = layers[layer, W_AT], layers[layer, B_AT], layers[layer, PRE_AT], layers[
        layer, PATCH_AT]
    pre = row[pre_at:pre_at + channels_out * positions]
    for o in range(channels_out):
        bias = weights[b_at + o]
        part = pre[o * positions:(o + 1) * positions]
        for p in range(positions):
            part[p] = bias
    _gemm(_TRANSPOSE, _NO, positions, channels_out, fan_in, row[patch_at:], fan_in, weights[w_at:], fan_in,
          np.float32(1.0), pre, positions)


@_kernel
def forward(weights: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool, row: np.ndarray,
            x: np.ndarray, known_same: bool) -> None:
    """The network on input ``x`` in workspace row ``row``; the heads' outputs end at
    ``row[layers[num_hidden, PRE_AT]:]``. When the row's input already is ``x`` (it held a pass
    of ``x``, e.g. s' of the last update is the s of this act), the input copy and the first
    conv layer's patches are kept: they depend on the input only. ``known_same``: the caller
    already found that it is (the comparison is not repeated)."""
    same = known_same or kernels.same_input(layers, x, row)
    if not same:
        kernels._copy_input(x, row)
    for layer in range(layers.shape[0]):
        if layers[layer, KIND] == CONV:
            if not (same and layer == 0):
                _patches(layers, layer, row, layer >= 0)  # True: to patches (a run-time bool)
            _conv_forward(weights, layers, layer, row)
        else:
            kernels._linear(weights, layers, layer, row, row, kernels._no(x))
        if layer < num_hidden:
            kernels._normalize_and_activate(layers, layer, layer_norm, row)


@_kernel
def forward_kept(weights: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
                 workspace: np.ndarray, x: np.ndarray, row: int, kept: bool) -> int:
    """The pass of ``x`` to keep for the backward pass; returns its workspace row. ``row``
    holds the kept pass so far (valid when ``kept``: the weights did not change since): it is
    returned as it is when it is of ``x``. Otherwise, when the other row's input is ``x`` (s'
    of the last update), the pass is run there, reusing its first-layer patches; else in
    ``row``."""
    if kept and kernels.same_input(layers, x, workspace[row]):
        return row
    other = 1 - row
    same = kernels.same_input(layers, x, workspace[other])
    if same:
        row = other
    forward(weights, layers, num_hidden, layer_norm, workspace[row], x, same)
    return row


# ============================================================================================
# Backward, fused with the trace update z ← γλ z + g and its ‖z‖₁
# ============================================================================================

@_kernel
def _conv_backward(weights: np.ndarray, trace: np.ndarray, layers: np.ndarray, layer: int, row: np.ndarray,
                   gradients: np.ndarray, trace_decay: np.float32, propagate: bool) -> None:
    """A conv layer with output gradient G = gradients[pre] ([C_out, positions]):
    ``z_W ← γλ z_W + G · patches`` (one SGEMM, β = γλ), ``z_b ← γλ z_b + Σ_p G[:, p]`` (float64
    sums, rounded once), and with ``propagate`` gradients[in] = col2im(Gᵀ W)."""
    positions, fan_in = layers[layer, POSITIONS], layers[layer, FAN_IN]
    channels_out = layers[layer, N_OUT] // positions
    w_at, b_at, pre_at, patch_at = layers[layer, W_AT], layers[layer, B_AT], layers[layer, PRE_AT], layers[
        layer, PATCH_AT]
    grad = gradients[pre_at:pre_at + channels_out * positions]
    _gemm(_NO, _NO, fan_in, channels_out, positions, row[patch_at:], fan_in, grad, positions, trace_decay,
          trace[w_at:], fan_in)
    for o in range(channels_out):
        total = 0.0
        for p in range(positions):
            total += np.float64(grad[o * positions + p])
        trace[b_at + o] = trace[b_at + o] * trace_decay + np.float32(total)
    if propagate:
        _gemm(_NO, _TRANSPOSE, fan_in, positions, channels_out, weights[w_at:], fan_in, grad, positions,
              np.float32(0.0), gradients[patch_at:], fan_in)
        _patches(layers, layer, gradients, layer < 0)  # False: back to the input (col2im)


@_kernel
def backward(weights: np.ndarray, trace: np.ndarray, layers: np.ndarray, num_hidden: int, layer_norm: bool,
             row: np.ndarray, gradients: np.ndarray, output_gradient: np.ndarray, trace_decay: np.float32
             ) -> np.float32:
    """``z ← γλ z + ∇(output_gradient · outputs)`` for the pass in workspace row ``row``;
    returns ``Σ‖z‖₁`` over the whole flat trace (its padding is zero), accumulated in float64
    and rounded once (:func:`streamx.fast.kernels.l1_norm`)."""
    out_at = layers[num_hidden, PRE_AT]
    for k in range(output_gradient.shape[0]):
        gradients[out_at + k] = output_gradient[k]
    kernels._zero(gradients, layers[num_hidden, IN_AT], layers[num_hidden, N_IN])  # the heads' shared input
    for head in range(num_hidden, layers.shape[0]):
        propagate = head > 0  # always (a run-time bool: one compiled specialization)
        kernels._linear_backward(weights, trace, layers, head, row, gradients, trace_decay, propagate)
    for layer in range(num_hidden - 1, -1, -1):
        kernels._activation_backward(layers, layer, layer_norm, row, gradients)
        propagate = layer > 0  # the observation needs no gradient
        if layers[layer, KIND] == CONV:
            _conv_backward(weights, trace, layers, layer, row, gradients, trace_decay, propagate)
        else:
            if propagate:
                kernels._zero(gradients, layers[layer, IN_AT], layers[layer, N_IN])
            kernels._linear_backward(weights, trace, layers, layer, row, gradients, trace_decay, propagate)
    return kernels.l1_norm(trace)


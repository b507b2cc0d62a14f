"""Networks of the paper: sparse initialization, parameter-free LayerNorm, MLP and conv nets
(PAPER §1.3, §1.4, §3).

Every network takes a *batched* input (``[B, features]`` or ``[B, C, H, W]``); LayerNorm
normalizes each sample over all its feature dimensions, as the original does for an
unbatched sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamx.errors import ConfigError

__all__ = [
    "FeatureLayerNorm",
    "atari_net",
    "init_network",
    "minatar_net",
    "mlp",
    "sparse_init_",
]

LEAKY_RELU_SLOPE = 0.01


@torch.no_grad()
def sparse_init_(weight: Tensor, sparsity: float = 0.9, generator: torch.Generator | None = None) -> Tensor:
    """Sparse initialization in place (PAPER §1.3).

    Draws ``U(-1/√fan_in, 1/√fan_in)`` and then, for each output unit independently, sets
    exactly ``ceil(sparsity · fan_in)`` of its incoming weights (chosen without replacement)
    to zero. ``fan_in`` is ``in_features`` for Linear and ``C_in·kh·kw`` for Conv2d.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity={sparsity} must lie in [0, 1); the paper uses 0.9")
    if weight.dim() < 2:
        raise ValueError("sparse_init_ needs a weight with at least 2 dimensions (out, in, ...)")
    fan_out = weight.shape[0]
    fan_in = weight[0].numel()
    bound = 1.0 / math.sqrt(fan_in)
    weight.uniform_(-bound, bound, generator=generator)
    num_zeros = math.ceil(sparsity * fan_in)
    if num_zeros:
        # A random permutation per row; its first num_zeros entries are the zeroed inputs.
        order = torch.rand(fan_out, fan_in, generator=generator).argsort(dim=1)
        flat = weight.view(fan_out, fan_in)
        flat.scatter_(1, order[:, :num_zeros], 0.0)
    return weight


class FeatureLayerNorm(nn.Module):
    """LayerNorm without gain or bias over the last ``num_dims`` dimensions (PAPER §1.4)."""

    def __init__(self, num_dims: int = 1, eps: float = 1e-5):
        super().__init__()
        self.num_dims = num_dims
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-self.num_dims:], eps=self.eps)

    def extra_repr(self) -> str:
        return f"num_dims={self.num_dims}, eps={self.eps}"


def _hidden_block(layer: nn.Module, layer_norm: bool, norm_dims: int) -> list[nn.Module]:
    block: list[nn.Module] = [layer]
    if layer_norm:
        block.append(FeatureLayerNorm(norm_dims))
    block.append(nn.LeakyReLU(LEAKY_RELU_SLOPE))
    return block


def init_network(net: nn.Module, sparse: bool = True, sparsity: float = 0.9) -> nn.Module:
    """Sparse-initialize every Linear/Conv2d weight and zero its bias; with ``sparse=False``
    keep PyTorch's default initialization (the "classic" baselines)."""
    if sparse:
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                sparse_init_(module.weight, sparsity)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return net


def mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int | None = None,
        layer_norm: bool = True) -> nn.Sequential:
    """``Linear → LayerNorm → LeakyReLU`` per hidden size, then a linear output layer (when
    ``out_features`` is given; otherwise the trunk alone, for networks with several heads)."""
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden_sizes:
        layers += _hidden_block(nn.Linear(width, size), layer_norm, 1)
        width = size
    if out_features is not None:
        layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def _conv_output_shape(conv: nn.Sequential, in_shape: Sequence[int]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(conv(torch.zeros(1, *in_shape)).shape[1:])


def minatar_net(in_shape: Sequence[int], out_features: int | None = None,
                layer_norm: bool = True, hidden: int = 128) -> nn.Sequential:
    """MinAtar network (PAPER §3): Conv 16 (3×3, stride 1) → FC 128 → output.

    ``in_shape`` is channels-first ``(C, H, W)``.
    """
    channels = in_shape[0]
    conv = nn.Sequential(*_hidden_block(nn.Conv2d(channels, 16, 3, stride=1), layer_norm, 3))
    flat = math.prod(_conv_output_shape(conv, in_shape))
    layers = [*conv, nn.Flatten(), *_hidden_block(nn.Linear(flat, hidden), layer_norm, 1)]
    if out_features is not None:
        layers.append(nn.Linear(hidden, out_features))
    return nn.Sequential(*layers)


def atari_net(in_shape: Sequence[int] = (4, 84, 84), out_features: int | None = None,
              layer_norm: bool = True, hidden: int = 256) -> nn.Sequential:
    """Atari network (PAPER §3): Conv 32 (8×8, s5) → Conv 64 (4×4, s3) → Conv 64 (3×3, s2)
    → FC 256 → output."""
    conv = nn.Sequential(
        *_hidden_block(nn.Conv2d(in_shape[0], 32, 8, stride=5), layer_norm, 3),
        *_hidden_block(nn.Conv2d(32, 64, 4, stride=3), layer_norm, 3),
        *_hidden_block(nn.Conv2d(64, 64, 3, stride=2), layer_norm, 3),
    )
    flat = math.prod(_conv_output_shape(conv, in_shape))
    layers = [*conv, nn.Flatten(), *_hidden_block(nn.Linear(flat, hidden), layer_norm, 1)]
    if out_features is not None:
        layers.append(nn.Linear(hidden, out_features))
    return nn.Sequential(*layers)

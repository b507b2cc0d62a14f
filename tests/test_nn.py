"""Sparse init, parameter-free LayerNorm and the paper's network shapes (PAPER §1.3, §1.4, §3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from streamx.nn import FeatureLayerNorm, atari_net, init_network, minatar_net, mlp, sparse_init_


@pytest.mark.parametrize("layer", [nn.Linear(32, 16), nn.Linear(11, 7), nn.Conv2d(3, 4, 3), nn.Conv2d(16, 8, (2, 5))])
def test_sparse_init_zeroes_exactly_ceil_sparsity_fan_in_per_unit(layer):
    torch.manual_seed(0)
    sparse_init_(layer.weight, 0.9)
    fan_in = layer.weight[0].numel()
    per_unit = layer.weight.reshape(layer.weight.shape[0], -1)
    zeros = (per_unit == 0).sum(dim=1)
    assert zeros.tolist() == [math.ceil(0.9 * fan_in)] * layer.weight.shape[0]
    assert per_unit.abs().max() <= 1 / math.sqrt(fan_in)


def test_sparse_init_picks_different_inputs_per_unit():
    torch.manual_seed(0)
    weight = torch.empty(64, 100)
    sparse_init_(weight, 0.9)
    patterns = {tuple((row != 0).nonzero().flatten().tolist()) for row in weight}
    assert len(patterns) > 60  # independent per unit, not one shared mask


def test_init_network_zeroes_biases_and_keeps_default_init_when_off():
    torch.manual_seed(0)
    net = init_network(mlp(5, [8], 2), sparse=True)
    assert all((m.bias == 0).all() for m in net.modules() if isinstance(m, nn.Linear))
    torch.manual_seed(0)
    dense = init_network(mlp(5, [8], 2), sparse=False)
    assert (dense[0].weight != 0).all()


def test_feature_layer_norm_has_no_parameters_and_normalizes_each_sample():
    norm = FeatureLayerNorm(3)
    assert list(norm.parameters()) == []
    x = torch.randn(2, 4, 5, 5) * 3 + 7
    y = norm(x)
    per_sample = y.reshape(2, -1)
    assert per_sample.mean(dim=1).abs().max() < 1e-5
    assert torch.allclose(per_sample.var(dim=1, unbiased=False), torch.ones(2), atol=1e-3)
    # a sample's normalization is independent of the other samples in the batch
    assert torch.allclose(norm(x[:1]), y[:1], atol=1e-6)


def test_network_shapes_match_the_paper():
    net = mlp(11, [128, 128], 3)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "FeatureLayerNorm", "LeakyReLU", "Linear", "FeatureLayerNorm", "LeakyReLU", "Linear"]
    assert net(torch.zeros(2, 11)).shape == (2, 3)
    minatar = minatar_net((4, 10, 10), 6)
    assert minatar[0].out_channels == 16 and minatar[0].kernel_size == (3, 3)
    assert minatar(torch.zeros(1, 4, 10, 10)).shape == (1, 6)
    atari = atari_net((4, 84, 84), 4)
    convs = [m for m in atari if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (5, 5)), (64, (4, 4), (3, 3)), (64, (3, 3), (2, 2))]
    assert atari(torch.zeros(1, 4, 84, 84)).shape == (1, 4)
    assert [m.out_features for m in atari if isinstance(m, nn.Linear)] == [256, 4]

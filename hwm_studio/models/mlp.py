"""Smooth MLPs, including a scalar MLP with an analytic input gradient.

Why analytic: the energy's gradient is evaluated at every integrator stage. Writing the chain
rule out as plain tensor ops (instead of calling torch.autograd.grad) halves its cost, has no
graph-building overhead, works under torch.no_grad and torch.compile, and stays differentiable
for training (backprop simply runs through these ops). Activations are smooth (tanh, softplus):
ReLU has a zero second derivative, which would make the learned forces piecewise constant.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ACTIVATIONS = ("tanh", "softplus")


def _act(name: str, a: Tensor) -> tuple[Tensor, Tensor]:
    """Activation value and derivative."""
    if name == "tanh":
        h = torch.tanh(a)
        return h, 1.0 - h * h
    if name == "softplus":
        return F.softplus(a), torch.sigmoid(a)
    raise ValueError(f"unknown activation {name!r}; use one of {ACTIVATIONS}")


def _act_value(name: str, a: Tensor) -> Tensor:
    return torch.tanh(a) if name == "tanh" else F.softplus(a)


class MLP(nn.Module):
    """Plain smooth MLP: in_dim -> hidden x depth -> out_dim (orthogonal init, zero biases)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "tanh",
        zero_last: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {ACTIVATIONS}")
        dims = [in_dim] + [hidden] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.out = nn.Linear(dims[-1], out_dim)
        self.activation = activation
        for layer in self.hidden:
            nn.init.orthogonal_(layer.weight)
            nn.init.zeros_(layer.bias)
        if zero_last:  # start as the zero function: a correction that must earn its size
            nn.init.zeros_(self.out.weight)
        else:
            nn.init.orthogonal_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = _act_value(self.activation, layer(x))
        return self.out(x)


class ScalarMLP(MLP):
    """MLP with one output and an analytic gradient with respect to its input."""

    def __init__(self, in_dim: int, hidden: int = 64, depth: int = 2, activation: str = "tanh") -> None:
        super().__init__(in_dim, 1, hidden, depth, activation)
        nn.init.normal_(self.out.weight, std=1.0 / math.sqrt(hidden))
        # Random biases: with zero biases a tanh net is odd, so a symmetrised energy
        # phi(d) + phi(-d) would be identically zero and potentials would start odd.
        for layer in self.hidden:
            bound = 1.0 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.bias, -bound, bound)

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """y (...,) and dy/dx (..., in_dim) for x (..., in_dim), by the chain rule written out."""
        derivs = []
        h = x
        for layer in self.hidden:
            h, dh = _act(self.activation, layer(h))
            derivs.append(dh)
        y = self.out(h)[..., 0]
        g = self.out.weight[0].expand_as(h)  # (..., hidden): dy/dh_L
        for layer, dh in zip(reversed(self.hidden), reversed(derivs), strict=True):
            g = (g * dh) @ layer.weight  # back through activation and linear map
        return y, g

    def grad(self, x: Tensor) -> Tensor:
        return self.value_and_grad(x)[1]

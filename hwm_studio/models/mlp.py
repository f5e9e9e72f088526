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
from collections.abc import Callable

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

    def _hidden(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Last hidden activation and every layer's activation derivative, over x flattened to 2-D
        (linear maps on 2-D inputs skip a reshape per layer; callers restore the leading shape)."""
        derivs = []
        h = x.reshape(-1, x.shape[-1])
        for layer in self.hidden:
            h, dh = _act(self.activation, layer(h))
            derivs.append(dh)
        return h, derivs

    def _backward(self, g: Tensor, derivs: list[Tensor]) -> Tensor:
        """Carry a cotangent on the last hidden layer back to the input (chain rule written out)."""
        for layer, dh in zip(reversed(self.hidden), reversed(derivs), strict=True):
            g = (g * dh) @ layer.weight  # back through activation and linear map
        return g

    def forward_and_vjp(self, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """y = f(x) for x (N, in), and the map cotangent (N, out) -> cotangent^T df/dx (N, in).

        Analytic, like ScalarMLP.value_and_grad: no autograd graph, so it traces and fuses.
        """
        h, derivs = self._hidden(x)
        return self.out(h).reshape(*x.shape[:-1], -1), lambda cot: self._backward(cot @ self.out.weight, derivs)


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

    def _input_grad(self, h: Tensor, derivs: list[Tensor]) -> Tensor:
        g = self._backward(self.out.weight[0], derivs)  # dy/dh_L (hidden,), broadcast by the first dh
        return g if derivs else g.expand_as(h)

    def value_and_grad(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """y (...,) and dy/dx (..., in_dim) for x (..., in_dim), by the chain rule written out."""
        h, derivs = self._hidden(x)
        lead = x.shape[:-1]
        return self.out(h)[:, 0].reshape(lead), self._input_grad(h, derivs).reshape(x.shape)

    def grad(self, x: Tensor) -> Tensor:
        """dy/dx alone (what integrators need: skips the output layer)."""
        h, derivs = self._hidden(x)
        return self._input_grad(h, derivs).reshape(x.shape)

"""The controlled-dissipative (port-Hamiltonian) vector field.

    dz/dt = (J - R(z)) grad H(z) + G(z) u + r(z, u)

J is the canonical symplectic matrix, so J grad H = (dH/dp, -dH/dq). R(z) is positive
semi-definite (friction only removes energy), G(z) u are the generalized forces of the action,
r(z, u) an optional learned residual for whatever the energy structure cannot explain.

Along any trajectory the energy balance holds exactly:
    dH/dt = -grad H^T R grad H + grad H^T G u + grad H^T r
           = -(dissipated power) + (control power) + (residual power),
which is what the studio's energy ledger integrates and what the tests check.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from hwm_studio.physics.energy import Hamiltonian, sum_or_zeros
from hwm_studio.state import PhaseState


class GivenGradient:
    """Stands in for a Hamiltonian where a port asks for grad H, answering with a given vector.

    Why: friction is R(z) grad H(z), and ports compute it from the Hamiltonian they are handed; a
    discrete-gradient step needs R(z) applied to its own discrete gradient instead, which this
    object supplies without every port learning a second signature.
    """

    def __init__(self, gradient: PhaseState) -> None:
        self.gradient = gradient

    def grad(self, state: PhaseState) -> PhaseState:
        return self.gradient

    def grad_q(self, q: Tensor, p: Tensor) -> Tensor:
        return self.gradient.q

    def grad_p(self, q: Tensor, p: Tensor) -> Tensor:
        return self.gradient.p


class Dissipation(nn.Module, ABC):
    """R(z) grad H(z) for a positive semi-definite R(z) (PSD must hold by construction).

    Friction that acts on momenta only (R = diag(0, Gamma)) sets `momentum_only` and implements
    `momentum_part`; the field then skips the zero q-part (fewer ops per integrator stage).
    """

    momentum_only: ClassVar[bool] = False

    def apply(self, state: PhaseState, hamiltonian: Hamiltonian) -> PhaseState:
        """Return R(z) grad H(z) as a (q-part, p-part) pair, each (B, E, D)."""
        return PhaseState(torch.zeros_like(state.q), self.momentum_part(state, hamiltonian))

    def momentum_part(self, state: PhaseState, hamiltonian: Hamiltonian) -> Tensor:
        """The p-part of R grad H, for `momentum_only` dissipations."""
        raise NotImplementedError(f"{type(self).__name__} must override apply or momentum_part")


class InputMap(nn.Module, ABC):
    """G(z) u: how an action of dimension `action_dim` pushes the state (same momentum-only option).

    An input map whose G depends on q alone sets `reads_momentum = False`: over a non-conservative
    step that keeps q, its force is then computed once instead of at every stage.
    """

    action_dim: int
    momentum_only: ClassVar[bool] = False
    reads_momentum: ClassVar[bool] = True

    def apply(self, state: PhaseState, u: Tensor) -> PhaseState:
        """Return G(z) u for u of shape (B, action_dim)."""
        return PhaseState(torch.zeros_like(state.q), self.momentum_part(state, u))

    def momentum_part(self, state: PhaseState, u: Tensor) -> Tensor:
        """The p-part of G u, for `momentum_only` input maps."""
        raise NotImplementedError(f"{type(self).__name__} must override apply or momentum_part")


class Residual(nn.Module, ABC):
    """r(z, u): a correction outside the energy structure; its size is penalised in training."""

    momentum_only: ClassVar[bool] = False  # a residual may move positions too

    @abstractmethod
    def apply(self, state: PhaseState, u: Tensor | None) -> PhaseState:
        """Return r(z, u), each part (B, E, D)."""


class MomentumDamping(Dissipation):
    """Viscous friction on momenta: R = diag(0, gamma_i I), so dp/dt gains -gamma_i dH/dp_i.

    gamma >= 0 (scalar or one per entity) makes R positive semi-definite. For a pendulum,
    dH/dp is the angular velocity, so this is a torque -gamma * omega.
    """

    def __init__(self, gamma: float | Sequence[float]) -> None:
        super().__init__()
        g = torch.as_tensor(gamma, dtype=torch.float64).reshape(1, -1, 1)
        if not torch.isfinite(g).all() or (g < 0).any():
            raise ValueError(f"damping gamma must be finite and >= 0 (R must be PSD), got {gamma}")
        self.register_buffer("gamma", g)

    momentum_only = True

    def momentum_part(self, state: PhaseState, hamiltonian: Hamiltonian) -> Tensor:
        gp = hamiltonian.grad_p(state.q, state.p)
        return self.gamma.to(gp.dtype) * gp


class LinearInputMap(InputMap):
    """Constant G acting on momenta: dp/dt gains (G u) reshaped to (E, D).

    `matrix` has shape (E * D, A): column a is the generalized force of unit action a.
    """

    def __init__(self, matrix: Tensor | Sequence[Sequence[float]], n_entities: int, dim: int) -> None:
        super().__init__()
        g = torch.as_tensor(matrix, dtype=torch.float64)
        if g.ndim != 2 or g.shape[0] != n_entities * dim:
            raise ValueError(f"input matrix must have shape ({n_entities * dim}, A), got {tuple(g.shape)}")
        self.register_buffer("matrix", g)
        self.action_dim = g.shape[1]
        self.n_entities, self.dim = n_entities, dim

    momentum_only = True
    reads_momentum = False

    def momentum_part(self, state: PhaseState, u: Tensor) -> Tensor:
        force = (u @ self.matrix.to(u.dtype).T).reshape(u.shape[0], self.n_entities, self.dim)
        return force.expand_as(state.p)


def _scaled(scale: float | Tensor, x: Tensor) -> Tensor:
    return x if isinstance(scale, float) and scale == 1.0 else scale * x


class PortHamiltonianField(nn.Module):
    """The full vector field, with the studio's knobs as plain attributes.

    Knobs (changed live by sliders, read at every evaluation):
        dissipation_scale: multiplies R (0 switches friction off; stays PSD for scale >= 0).
        residual_scale: multiplies r (0 gives the pure port-Hamiltonian model).
    """

    def __init__(
        self,
        hamiltonian: Hamiltonian,
        dissipation: Dissipation | None = None,
        input_map: InputMap | None = None,
        residual: Residual | None = None,
    ) -> None:
        super().__init__()
        self.hamiltonian = hamiltonian
        self.dissipation = dissipation
        self.input_map = input_map
        self.residual = residual
        self.dissipation_scale = 1.0
        self.residual_scale = 1.0

    @property
    def action_dim(self) -> int:
        return 0 if self.input_map is None else self.input_map.action_dim

    def _dissipating(self) -> bool:
        return self.dissipation is not None and self.dissipation_scale != 0.0

    def _residual_on(self) -> bool:
        return self.residual is not None and self.residual_scale != 0.0

    def is_conservative(self, u: Tensor | None) -> bool:
        """True when only J grad H acts (decided from configuration, never from values)."""
        controlled = u is not None and self.input_map is not None
        return not (self._dissipating() or controlled or self._residual_on())

    def check_action(self, u: Tensor | None, batch: int) -> None:
        """Fail clearly when an action does not fit this field (shape and batch)."""
        if u is None:
            return
        if u.ndim != 2 or u.shape[1] != self.action_dim or u.shape[0] not in (1, batch):
            raise ValueError(f"action must have shape ({batch}, {self.action_dim}); got {tuple(u.shape)}")

    def conservative(self, state: PhaseState) -> PhaseState:
        """J grad H."""
        return self.hamiltonian.hamilton_field(state)

    def _active_ports(
        self, u: Tensor | None, gradient: PhaseState | None = None
    ) -> list[tuple[float | Tensor, nn.Module, tuple[object, ...]]]:
        """(scale, port, arguments) of every non-conservative port acting now (from configuration);
        friction acts on `gradient` when one is given, else on grad H at the state."""
        ports: list[tuple[float | Tensor, nn.Module, tuple[object, ...]]] = []
        if self._dissipating():
            acts_on = self.hamiltonian if gradient is None else GivenGradient(gradient)
            ports.append((-self.dissipation_scale, self.dissipation, (acts_on,)))
        if u is not None and self.input_map is not None:
            ports.append((1.0, self.input_map, (u,)))
        if self._residual_on():
            ports.append((self.residual_scale, self.residual, (u,)))
        return ports

    def moves_positions(self, u: Tensor | None) -> bool:
        """Whether the non-conservative flow can change q (some acting port is not momentum-only).
        When it cannot, a step's closing force dH/dq is still valid at the next step's start."""
        return any(not getattr(port, "momentum_only", False) for _, port, _ in self._active_ports(u))

    def nonconservative(self, state: PhaseState, u: Tensor | None, gradient: PhaseState | None = None) -> PhaseState:
        """-R grad H + G u + r: everything that exchanges energy with the outside. With `gradient`,
        -R(z) gradient + G u + r (a discrete-gradient scheme's friction acts on its own gradient)."""
        q_parts: list[Tensor] = []
        p_parts: list[Tensor] = []
        for scale, port, args in self._active_ports(u, gradient):
            if getattr(port, "momentum_only", False):
                p_parts.append(_scaled(scale, port.momentum_part(state, *args)))
            else:
                part = port.apply(state, *args)
                q_parts.append(_scaled(scale, part.q))
                p_parts.append(_scaled(scale, part.p))
        return PhaseState(sum_or_zeros(q_parts, state.q), sum_or_zeros(p_parts, state.p))

    def nonconservative_momentum(self, state: PhaseState, u: Tensor | None) -> Tensor:
        """The p-part of `nonconservative`, for when `moves_positions(u)` is False (its q-part is zero)."""
        return self.momentum_rate(state, u)(state.p)

    def momentum_rate(self, state: PhaseState, u: Tensor | None) -> Callable[[Tensor], Tensor]:
        """dp/dt of the non-conservative flow at the state's q as a function of p, for when
        `moves_positions(u)` is False (q then stays put over the flow). Ports that do not read p
        (an input map G(q) u) are evaluated once, here; friction and the residual at every call."""
        fixed, varying = [], []
        for scale, port, args in self._active_ports(u):
            (varying if getattr(port, "reads_momentum", True) else fixed).append((scale, port, args))
        q = state.q
        constant = [_scaled(scale, port.momentum_part(state, *args)) for scale, port, args in fixed]

        def rate(p: Tensor) -> Tensor:
            at = PhaseState(q, p)
            parts = [_scaled(scale, port.momentum_part(at, *args)) for scale, port, args in varying]
            return sum_or_zeros(parts + constant, p)

        return rate

    def forward(self, state: PhaseState, u: Tensor | None = None) -> PhaseState:
        """dz/dt at `state` under action `u` (B, A) or None."""
        return self.conservative(state).axpy(1.0, self.nonconservative(state, u))

    def powers(self, state: PhaseState, u: Tensor | None, gradient: PhaseState | None = None) -> dict[str, Tensor]:
        """Energy-balance powers, each (B,): dH/dt = -dissipated + control + residual. With
        `gradient`, the same products taken with it in place of grad H at the state (the exact
        work of a discrete-gradient step, per unit time)."""
        grad = self.hamiltonian.grad(state) if gradient is None else gradient
        acts_on = self.hamiltonian if gradient is None else GivenGradient(gradient)
        zero = torch.zeros(state.batch_size, dtype=state.dtype, device=state.device)
        dissipated, control, residual = zero, zero, zero
        if self._dissipating():
            dissipated = self.dissipation_scale * grad.dot(self.dissipation.apply(state, acts_on))
        if u is not None and self.input_map is not None:
            control = grad.dot(self.input_map.apply(state, u))
        if self._residual_on():
            residual = self.residual_scale * grad.dot(self.residual.apply(state, u))
        return {"dissipated": dissipated, "control": control, "residual": residual}

"""Physics core: energies, the port-Hamiltonian field, integrators and rollouts (no UI imports)."""

from hwm_studio.physics.energy import ENERGY_KINDS, EnergyTerm, Hamiltonian
from hwm_studio.physics.integrators import INTEGRATORS, Integrator, get_integrator
from hwm_studio.physics.port_hamiltonian import (
    Dissipation,
    InputMap,
    LinearInputMap,
    MomentumDamping,
    PortHamiltonianField,
    Residual,
)
from hwm_studio.physics.rollout import Trajectory, energy_ledger, flatten_time, rollout

__all__ = [
    "ENERGY_KINDS",
    "INTEGRATORS",
    "Dissipation",
    "EnergyTerm",
    "Hamiltonian",
    "InputMap",
    "Integrator",
    "LinearInputMap",
    "MomentumDamping",
    "PortHamiltonianField",
    "Residual",
    "Trajectory",
    "energy_ledger",
    "flatten_time",
    "get_integrator",
    "rollout",
]

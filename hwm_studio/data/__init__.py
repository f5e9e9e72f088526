"""Trajectory data: the .npz format, simulation from ground-truth systems."""

from hwm_studio.data.format import (
    DataFormatError,
    TrajectoryData,
    describe,
    load_trajectories,
    save_trajectories,
    validate,
)
from hwm_studio.data.simulate import simulate

__all__ = [
    "DataFormatError",
    "TrajectoryData",
    "describe",
    "load_trajectories",
    "save_trajectories",
    "simulate",
    "validate",
]

"""The `hwm-studio` command. The only place (with the UI) that turns names into objects.

User errors (bad files, bad options) print one line `hwm-studio: error: ...` and exit 1;
set HWM_STUDIO_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from hwm_studio.data.format import DataFormatError


class UserError(Exception):
    """An error in what the user asked for; printed as one line, no traceback."""


def parse_params(items: Sequence[str]) -> dict[str, float]:
    """--param name=value pairs -> dict (values as numbers)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--param expects name=value, got {item!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise UserError(f"--param {name}: {value!r} is not a number") from None
    return out


# --- simulate ---------------------------------------------------------------------------------
def _add_simulate(sub: argparse._SubParsersAction) -> None:
    from hwm_studio.data.simulate import CONTROLS
    from hwm_studio.physics.integrators import INTEGRATORS
    from hwm_studio.systems import system_names

    p = sub.add_parser("simulate", help="simulate a ground-truth system into a trajectory .npz")
    p.add_argument("--system", required=True, choices=system_names())
    p.add_argument("--trajectories", type=int, default=16, help="number of trajectories N")
    p.add_argument("--steps", type=int, default=100, help="time points T per trajectory (T - 1 steps of dt)")
    p.add_argument("--dt", type=float, default=None, help="time step (default: the system's)")
    p.add_argument("--integrator", default="yoshida4", choices=list(INTEGRATORS))
    p.add_argument("--substeps", type=int, default=4, help="internal steps per recorded step")
    p.add_argument("--dissipation", type=float, default=0.0, help="viscous damping gamma >= 0")
    p.add_argument("--control", default="zero", choices=CONTROLS)
    p.add_argument("--frames", type=int, default=None, metavar="SIZE", help="also render SIZExSIZE RGB frames")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="system parameter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=_simulate)


def _simulate(a: argparse.Namespace) -> int:
    from hwm_studio.data.format import describe, save_trajectories
    from hwm_studio.data.simulate import simulate
    from hwm_studio.systems import get_system

    if not a.out.endswith(".npz"):
        raise UserError(f"--out must end in .npz, got {a.out!r}")
    system = get_system(a.system, **parse_params(a.param))
    data = simulate(
        system,
        n_trajectories=a.trajectories,
        n_times=a.steps,
        dt=a.dt,
        integrator=a.integrator,
        substeps=a.substeps,
        damping=a.dissipation,
        control=a.control,
        frame_size=a.frames,
        seed=a.seed,
    )
    path = save_trajectories(data, a.out)
    print(f"wrote {path}")
    print(describe(data))
    return 0


# --- inspect ----------------------------------------------------------------------------------
def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="validate a trajectory .npz and summarise it")
    p.add_argument("file")
    p.set_defaults(func=_inspect)


def _inspect(a: argparse.Namespace) -> int:
    from hwm_studio.data.format import describe, load_trajectories, unknown_keys

    data = load_trajectories(a.file)
    print(f"{a.file}: valid trajectory file")
    print(describe(data, ignored=unknown_keys(a.file)))
    return 0


# --- entry point ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwm-studio",
        description="Hamiltonian World Model studio: simulate, train, evaluate, render and plan.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in (_add_simulate, _add_inspect):
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UserError, DataFormatError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("HWM_STUDIO_DEBUG"):
            raise
        print(f"hwm-studio: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hwm-studio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

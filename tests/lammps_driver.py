"""A small LAMMPS run with the surrogate fix, the same on 1 rank or under ``mpiexec -n N``.

``python tests/lammps_driver.py OUT.npz [--cluster] [--steps K]`` writes, on rank 0, the
positions (unwrapped) and velocities of the atoms in the order of their start sites (atom
IDs depend on the rank count), LAMMPS's rdf and thermo of the last step.
The model is the tests' tiny untrained ``equivariant`` one (seed 0: identical on every rank).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

SETUP = [
    "units metal",
    "boundary p p p",
    "atom_style atomic",
    "lattice fcc 4.0868",
    "region b block 0 5 0 5 0 5",
    "create_box 1 b",
    "create_atoms 1 region b",
    "mass 1 26.9815",
    "displace_atoms all random 0.05 0.05 0.05 11",
    "pair_style zero 5.0",
    "pair_coeff * *",
    "velocity all create 400 7 mom yes dist gaussian loop geom",
    "compute r all rdf 50 cutoff 5.0",
    "compute m all msd",
    "thermo_style custom step time temp ke c_m[4]",
]


def tiny_fix_model():
    from test_rollout import tiny_model

    return tiny_model("equivariant")


def gathered(lmp, name: str, kind: int, count: int) -> np.ndarray:
    """Per-atom ``name`` of every atom, ordered by atom ID (a collective call)."""
    return np.ctypeslib.as_array(lmp.gather_atoms(name, kind, count)).reshape(-1, count)


def unwrapped_by_id(lmp) -> np.ndarray:
    from equignnmd.lammps import _Box

    box = _Box.of(lmp)
    x = gathered(lmp, "x", 1, 3)
    img = gathered(lmp, "image", 0, 1)[:, 0].astype(np.int64)
    mask, imax = lmp.extract_setting("IMGMASK"), lmp.extract_setting("IMGMAX")
    b1, b2 = lmp.extract_setting("IMGBITS"), lmp.extract_setting("IMG2BITS")
    n = np.stack([(img & mask) - imax, ((img >> b1) & mask) - imax, (img >> b2) - imax], 1)
    return x + n @ box.cell


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--cluster", action="store_true")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--dt-fs", type=float, default=2.0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from equignnmd._lammps import new_lammps
    from equignnmd.lammps import SurrogateFix

    lmp = new_lammps()
    for c in SETUP:
        lmp.command(c)
    start = unwrapped_by_id(lmp)  # create_atoms numbers atoms by rank: match by start site
    fix = SurrogateFix(
        lmp, tiny_fix_model(), dt_fs=args.dt_fs, remove_momentum=False,
        cluster=args.cluster or None, outputs_cutoff_A=6.0,
    )  # fmt: skip
    fix.run(args.steps)
    pos, vel = unwrapped_by_id(lmp), gathered(lmp, "v", 1, 3)
    rdf = np.array(lmp.numpy.extract_compute("r", 0, 2), copy=True)
    temp = lmp.get_thermo("temp")
    if fix.rank == 0:
        site = np.lexsort(np.round(start, 4).T[::-1])
        np.savez(args.out, pos=pos[site], vel=vel[site], rdf=rdf, temp=temp, ranks=fix.nprocs)
    lmp.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

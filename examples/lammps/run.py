"""The same run as ``in.surrogate``, driven from Python (SurrogateFix on a lammps instance).

python examples/lammps/run.py [--model pretrained:equivariant-al] [--steps 250]
mpirun -np 2 python examples/lammps/run.py
"""

from __future__ import annotations

import argparse

from equignnmd._lammps import new_lammps
from equignnmd.lammps import SurrogateFix

SETUP = """
units metal
boundary p p p
atom_style atomic
lattice fcc 4.0868
region box block 0 5 0 5 0 5
create_box 1 box
create_atoms 1 region box
mass 1 26.9815
pair_style zero 6.5
pair_coeff * *
velocity all create 900 4928459 mom yes dist gaussian
compute msd all msd
compute rdf all rdf 120 cutoff 6.0
fix rdf all ave/time 25 10 250 c_rdf[*] file rdf.dat mode vector
thermo_style custom step time temp ke c_msd[4]
thermo 25
dump traj all custom 50 traj.lammpstrj id type x y z vx vy vz
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pretrained:equivariant-al")
    p.add_argument("--dt-fs", type=float, default=20.0)
    p.add_argument("--steps", type=int, default=250)
    args = p.parse_args()
    lmp = new_lammps(quiet=False)
    lmp.commands_string(SETUP)
    fix = SurrogateFix(lmp, args.model, dt_fs=args.dt_fs)  # in place of `fix nve`
    fix.run(args.steps)  # raises RolloutUnstable if the guard stops the run
    lmp.command("write_restart end.restart")
    lmp.close()


if __name__ == "__main__":
    main()

"""ASE integration: ``equignnmd.ase.SurrogateMD`` is an ``ase.md.md.MolecularDynamics``.

Observers, ``MDLogger`` (or :class:`KineticOnlyLogger` without a calculator) and ``Trajectory``
writers work unchanged; ``timestep`` is in ASE units like every ASE integrator::

    from ase import units
    from equignnmd import load_checkpoint
    from equignnmd.ase import SurrogateMD

    dyn = SurrogateMD(atoms, load_checkpoint("pretrained:equivariant-al"),
                      timestep=20 * units.fs, temperature_K=300, thermostat="langevin",
                      friction=1 / (200 * units.fs), trajectory="md.traj")
    dyn.run(1000)

With these settings the shipped model holds 256 atoms of Al at 300 K for 20 ps (measured mean
300 K); with CSVR and its default τ = 100 strides it heats them to about 410 K (README, "ASE").
"""

from .ase_md import KineticOnlyLogger, SurrogateMD

__all__ = ["KineticOnlyLogger", "SurrogateMD"]

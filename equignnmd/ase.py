"""ASE integration: ``equignnmd.ase.SurrogateMD`` is an ``ase.md.md.MolecularDynamics``.

Observers, ``MDLogger`` (or :class:`KineticOnlyLogger` without a calculator) and ``Trajectory``
writers work unchanged; ``timestep`` is in ASE units like every ASE integrator::

    from ase import units
    from equignnmd import load_checkpoint
    from equignnmd.ase import SurrogateMD

    dyn = SurrogateMD(atoms, load_checkpoint("run/best.pt"), timestep=20 * units.fs,
                      temperature_K=300, thermostat="csvr", trajectory="md.traj")
    dyn.run(1000)
"""

from .ase_md import KineticOnlyLogger, SurrogateMD

__all__ = ["KineticOnlyLogger", "SurrogateMD"]

"""ASE integration: ``equignnmd.ase.SurrogateMD`` is an ``ase.md.md.MolecularDynamics``.

Observers, ``MDLogger`` (or :class:`KineticOnlyLogger` without a calculator) and ``Trajectory``
writers work unchanged; ``timestep`` is in ASE units like every ASE integrator::

    from ase import units
    from equignnmd import load_checkpoint
    from equignnmd.ase import SurrogateMD

    dyn = SurrogateMD(atoms, load_checkpoint("pretrained:symplectic-al"),
                      timestep=20 * units.fs, temperature_K=300, thermostat="csvr",
                      trajectory="md.traj")
    dyn.run(1000)

With these settings ``symplectic-al`` holds 256 atoms of Al at 300 K (measured 300.3 K over the
second 10 ps); the free-form ``equivariant-al`` under the same CSVR heats them (v2: 377 K over
the second 10 ps; v1: 410 K over all 20) and needs Langevin friction or an energy source
(docs/ase.md). ``predict(model, atoms, dt_fs)`` is one stride of a model for one ``Atoms``.
"""

from .ase_md import KineticOnlyLogger, SurrogateMD, predict

__all__ = ["KineticOnlyLogger", "SurrogateMD", "predict"]

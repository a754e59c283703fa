"""The learned potential and the energy sources, one layer below the models.

* :mod:`~equignnmd.potential.eam` — :class:`EnergyHead`, the embedded-atom-form potential
  (linear in its coefficients; cubic tables for rollouts): the ``symplectic`` model's
  potential and a checkpoint's own energy (``--energy model``).
* :mod:`~equignnmd.potential.fit` — its least-squares fit to a dataset's energies, forces
  and stresses (:func:`fit_energy_head`, the design matrices, scores and report).
* :mod:`~equignnmd.potential.sources` — energy sources, ``source(positions, cell, species,
  batch) -> (R,) eV``: the reference in LAMMPS (:class:`LammpsEnergy`), an ASE calculator
  (:class:`AseEnergy`), a checkpoint's head (:class:`ModelEnergy`); :func:`make_energy_source`;
  a dataset's own reference, LAMMPS or ASE: :func:`reference_source`.

It imports nothing from ``models``, ``rollout`` or above: the models and rollouts use it.
"""

from .eam import FORM_FIELDS, TABLE_SPACING_A, VOIGT, EnergyHead, EnergyHeadConfig, RadialTable
from .fit import (
    EnergyFitConfig,
    design_matrix,
    fit_energy_head,
    load_energy_frames,
    reference_virials,
    report_markdown,
    score_energy_head,
    stress_design_matrix,
    write_report,
)
from .sources import AseEnergy, LammpsEnergy, ModelEnergy, make_energy_source, reference_source

__all__ = [
    "FORM_FIELDS",
    "TABLE_SPACING_A",
    "VOIGT",
    "AseEnergy",
    "EnergyFitConfig",
    "EnergyHead",
    "EnergyHeadConfig",
    "LammpsEnergy",
    "ModelEnergy",
    "RadialTable",
    "design_matrix",
    "fit_energy_head",
    "load_energy_frames",
    "make_energy_source",
    "reference_source",
    "reference_virials",
    "report_markdown",
    "score_energy_head",
    "stress_design_matrix",
    "write_report",
]

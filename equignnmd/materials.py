"""Materials: the one record of an element's physical constants (element, mass, lattice).

Every part of the package that needs a mass, a lattice constant, an atomic number or a crystal
structure takes a :class:`Material` (default :data:`ALUMINIUM`) instead of repeating the number:
the data generator, the LAMMPS driver, the LAMMPS reference runs, the structural descriptors,
the benchmark boxes and the training-statistics defaults.

Only monatomic FCC aluminium is supported today; :func:`material` names the known elements in
its error for any other (multi-element support is a later issue).
"""

from __future__ import annotations

from dataclasses import dataclass

ATOMS_PER_CELL = {"fcc": 4}
"""Atoms per conventional cubic cell, by structure."""
CNA_CUTOFF_FCC = 0.854
"""LAMMPS' recommended ``cna/atom`` cutoff for FCC, in units of the lattice constant."""


@dataclass(frozen=True)
class Material:
    """A monatomic crystal. Units: amu, Å.

    ``lattice_A`` is the conventional cubic lattice constant of the boxes the package builds
    (4.05 Å for Al, the paper's value; the Mendelev EAM's own 0-bar value is 4.0732 Å at 300 K,
    so a 4.05 Å box is under ~14 kbar).
    """

    element: str
    atomic_number: int
    mass_amu: float
    lattice_A: float
    structure: str = "fcc"

    @property
    def atoms_per_cell(self) -> int:
        return ATOMS_PER_CELL[self.structure]

    @property
    def number_density_per_A3(self) -> float:
        """Atoms per Å³ of the perfect crystal at ``lattice_A``."""
        return self.atoms_per_cell / self.lattice_A**3

    @property
    def nearest_neighbour_A(self) -> float:
        """Nearest-neighbour distance of the perfect crystal, Å (a/√2 for FCC)."""
        return self.lattice_A / 2.0**0.5

    @property
    def cna_cutoff_A(self) -> float:
        """``cna/atom`` cutoff, Å: between the first and second FCC shells."""
        return CNA_CUTOFF_FCC * self.lattice_A

    def with_lattice(self, lattice_A: float) -> Material:
        """The same element in a box of another lattice constant (a strained or expanded box)."""
        from dataclasses import replace

        return replace(self, lattice_A=float(lattice_A))


ALUMINIUM = Material(element="Al", atomic_number=13, mass_amu=26.9815, lattice_A=4.05)

MATERIALS: dict[str, Material] = {"Al": ALUMINIUM}


def material(element: str, where: str = "element") -> Material:
    """The :class:`Material` of ``element`` (a symbol); a clear error for an unknown one."""
    try:
        return MATERIALS[element]
    except KeyError:
        raise ValueError(
            f"{where}: {element!r} is not a supported element; supported: "
            f"{', '.join(sorted(MATERIALS))} (multi-element systems are not supported yet)"
        ) from None

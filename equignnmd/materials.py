"""Materials: the one record of an element's physical constants (element, mass, lattice).

Every part of the package that needs a mass, a lattice constant, an atomic number or a crystal
structure takes a :class:`Material` (default :data:`ALUMINIUM`) instead of repeating the number:
the data generator, the LAMMPS driver, the LAMMPS reference runs, the structural descriptors,
the benchmark boxes and the training-statistics defaults.

:data:`MATERIALS` holds the elements the shipped models know (aluminium); :func:`material`
returns one of them. :func:`element_material` makes a :class:`Material` of any element for the
data generator (``equignnmd generate --elements Cu --lattice fcc``): the atomic number and
standard mass from ASE's tables and a starting guess of the lattice constant, which
:func:`equignnmd.data.lammps_md.relax_lattice` replaces by the potential's own 0-K value.
:func:`alloy_material` makes a random substitutional alloy (``--elements Cu,Zr --composition
Cu:0.64,Zr:0.36``): a :class:`Material` whose :class:`Composition` says which elements share
the lattice's sites, in which fractions and with which masses.
:data:`LATTICES` holds the geometry of the crystal lattices the generator builds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import ase.data
import numpy as np

CNA_CUTOFF_FCC = 0.854
"""LAMMPS' recommended ``cna/atom`` cutoff for FCC, in units of the lattice constant."""
IDEAL_C_OVER_A = math.sqrt(8.0 / 3.0)
"""c/a of close-packed hcp (touching spheres), 1.633."""


@dataclass(frozen=True)
class Lattice:
    """A crystal lattice as the generator builds it: a conventional orthogonal cell of edges
    a × ``b_over_a``·a × (c/a)·a (Å) holding ``basis`` (fractional coordinates), repeated
    ``cells`` times along x, y and z. c/a is 1 for the cubic lattices."""

    name: str
    basis: tuple[tuple[float, float, float], ...]
    """Atoms of the cell, fractional coordinates; LAMMPS' own ``lattice`` order."""
    b_over_a: float
    """y edge of the orthogonal cell over a (√3 for hcp, 1 for the cubic lattices)."""
    neighbour: tuple[float, float, float]
    """A nearest neighbour of the site at the origin, fractional (the divacancy's pair)."""
    interstitial: tuple[float, float, float]
    """An interstitial site, fractional: octahedral (fcc, bcc, hcp), tetrahedral (diamond)."""
    cna_cutoff: float
    """``cna/atom`` cutoff in units of a: between the shells CNA counts and the next."""
    slabs: bool
    """Whether the generator builds free-standing slabs of it (see
    :data:`equignnmd.data.lammps_md.FACET_AXES`)."""

    @property
    def atoms_per_cell(self) -> int:
        return len(self.basis)

    def cell_A(self, a: float, c_over_a: float = 1.0) -> tuple[float, float, float]:
        """Edges of the orthogonal conventional cell, Å."""
        return (a, self.b_over_a * a, c_over_a * a if self.name == "hcp" else a)

    def nearest_neighbour(self, c_over_a: float = 1.0) -> float:
        """Nearest-neighbour distance in units of a (hcp: in-plane a, or the out-of-plane
        neighbours where c/a is below the ideal √(8/3))."""
        if self.name == "hcp":
            return min(1.0, math.sqrt(1.0 / 3.0 + c_over_a**2 / 4.0))
        return {"fcc": math.sqrt(0.5), "bcc": math.sqrt(3.0) / 2, "diamond": math.sqrt(3.0) / 4}[
            self.name
        ]


_FCC = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5))
LATTICES: dict[str, Lattice] = {
    "fcc": Lattice("fcc", _FCC, 1.0, (0.5, 0.5, 0.0), (0.5, 0.5, 0.5), CNA_CUTOFF_FCC, True),
    # CNA counts the 8 + 6 neighbours of bcc: the cutoff lies between a and √2·a
    "bcc": Lattice(
        "bcc",
        ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)),
        1.0,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.0),
        (1.0 + math.sqrt(2.0)) / 2,
        True,
    ),
    # the orthogonal cell a × √3a × c of LAMMPS' ``lattice hcp``; the octahedral site sits
    # above the unoccupied C position, between the A (z = 0) and B (z = c/2) layers
    "hcp": Lattice(
        "hcp",
        ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 5.0 / 6.0, 0.5), (0.0, 1.0 / 3.0, 0.5)),
        math.sqrt(3.0),
        (0.5, 0.5, 0.0),
        (0.0, 2.0 / 3.0, 0.25),
        (1.0 + math.sqrt(2.0)) / 2,
        False,
    ),
    # four first neighbours at √3/4 a, twelve second ones at a/√2: every atom is CNA "other"
    "diamond": Lattice(
        "diamond",
        _FCC + tuple((x + 0.25, y + 0.25, z + 0.25) for x, y, z in _FCC),
        1.0,
        (0.25, 0.25, 0.25),
        (0.5, 0.5, 0.5),
        (math.sqrt(3.0) / 4 + math.sqrt(0.5)) / 2,
        False,
    ),
}
"""The lattices ``equignnmd generate --lattice`` builds."""
ATOMS_PER_CELL = {name: lat.atoms_per_cell for name, lat in LATTICES.items()}
"""Atoms per conventional cell, by structure."""


COMPOSITION_TOLERANCE = 1e-6
"""How far the fractions of a composition may sum from 1."""


@dataclass(frozen=True)
class Composition:
    """A random substitutional alloy: ``elements`` (chemical symbols, LAMMPS type order)
    share the sites of one lattice in the atom ``fractions`` (each > 0, summing to 1), each
    element with its mass ``masses_amu`` (amu)."""

    elements: tuple[str, ...]
    fractions: tuple[float, ...]
    masses_amu: tuple[float, ...]

    @property
    def atomic_numbers(self) -> tuple[int, ...]:
        return tuple(atomic_number(e) for e in self.elements)

    def counts(self, n_atoms: int) -> np.ndarray:
        """Atoms of each element in a box of ``n_atoms`` (E,): the fractions × N rounded so
        that they sum to N (largest remainders first; ties to the first element listed)."""
        exact = np.asarray(self.fractions, dtype=np.float64) * n_atoms
        counts = np.floor(exact + 1e-9).astype(np.int64)
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[: n_atoms - int(counts.sum())]] += 1
        return counts

    def types(self, n_atoms: int, seed: int) -> np.ndarray:
        """The element of each of ``n_atoms`` sites (N,), an index into ``elements``: exactly
        :meth:`counts` of each, placed by a random permutation drawn with ``seed`` (the same
        seed and N give the same alloy in LAMMPS and in ASE)."""
        ordered = np.repeat(np.arange(len(self.elements)), self.counts(n_atoms))
        return np.random.default_rng(seed).permutation(ordered)

    def mapping(self) -> dict[str, float]:
        """``{element: fraction}`` (the ``composition`` record of ``dataset.json``)."""
        return dict(zip(self.elements, self.fractions))

    @property
    def label(self) -> str:
        """``"Cu0.64Zr0.36"``."""
        return "".join(f"{e}{x:g}" for e, x in zip(self.elements, self.fractions))

    @classmethod
    def of_species(cls, species, masses, where: str = "state") -> Composition:
        """The composition of a box of atomic numbers ``species`` (N,) and masses ``masses``
        (N,) amu: its elements in increasing atomic number, their fractions and masses.
        ValueError naming ``where`` when one element carries several masses (LAMMPS gives
        every atom of a type one mass)."""
        species = np.asarray(species, dtype=np.int64)
        masses = np.asarray(masses, dtype=np.float64)
        zs, inverse, counts = np.unique(species, return_inverse=True, return_counts=True)
        low = np.full(len(zs), np.inf)
        high = np.full(len(zs), -np.inf)
        np.minimum.at(low, inverse, masses)
        np.maximum.at(high, inverse, masses)
        if np.any(high - low > 1e-9 * np.maximum(high, 1.0)):
            bad = int(zs[np.argmax(high - low)])
            raise ValueError(
                f"{where}: fields 'species' / 'masses': element {ase.data.chemical_symbols[bad]}"
                f" ({bad}) carries masses from {low.max():g} to {high.max():g} amu; expected "
                "one mass per element (the reference run gives every atom of a type one mass)"
            )
        return cls(
            elements=tuple(ase.data.chemical_symbols[int(z)] for z in zs),
            fractions=tuple(float(c) / len(species) for c in counts),
            masses_amu=tuple(float(m) for m in low),
        )


def parse_composition(
    text: str, elements: Sequence[str], where: str = "field 'composition'"
) -> tuple[float, ...]:
    """The fractions of ``elements`` (in their order) from ``"Cu:0.64,Zr:0.36"``: every
    element named once, each fraction a number > 0, the sum 1 (within
    :data:`COMPOSITION_TOLERANCE`). ValueError naming ``where`` and what was expected."""
    example = ",".join(f"{e}:{1 / len(elements):.3g}" for e in elements)
    expected = f"expected ELEMENT:FRACTION for each of {', '.join(elements)}, e.g. {example!r}"
    values: dict[str, float] = {}
    for token in (t.strip() for t in str(text).split(",") if t.strip()):
        symbol, _, number = token.partition(":")
        symbol = symbol.strip()
        try:
            fraction = float(number)
        except ValueError:
            fraction = math.nan
        if not (math.isfinite(fraction) and fraction > 0):
            raise ValueError(f"{where} = {text!r}: {token!r} has no fraction > 0; {expected}")
        if symbol not in elements:
            raise ValueError(
                f"{where} = {text!r}: {symbol!r} is not one of the elements "
                f"{', '.join(elements)} (field 'element', --elements); {expected}"
            )
        if symbol in values:
            raise ValueError(f"{where} = {text!r}: {symbol} is given twice; {expected}")
        values[symbol] = fraction
    missing = [e for e in elements if e not in values]
    if missing:
        raise ValueError(f"{where} = {text!r}: no fraction for {', '.join(missing)}; {expected}")
    total = sum(values.values())
    if abs(total - 1.0) > COMPOSITION_TOLERANCE:
        raise ValueError(
            f"{where} = {text!r}: the fractions sum to {total:g}; expected them to sum to 1"
        )
    return tuple(values[e] for e in elements)


@dataclass(frozen=True)
class Material:
    """A crystal: one element, or a random substitutional alloy (``composition``). Units:
    amu, Å.

    ``lattice_A`` is the lattice constant a of the boxes the package builds (4.05 Å for Al,
    the paper's value; the Mendelev EAM's own 0-bar value is 4.0732 Å at 300 K, so a 4.05 Å
    box is under ~14 kbar). ``c_over_a`` is hcp's c/a (None: the ideal √(8/3); unused for the
    cubic lattices). An alloy's ``element``, ``atomic_number`` are its first element's and its
    ``mass_amu`` the composition's mean mass; :meth:`mass_of` gives each element's own.
    """

    element: str
    atomic_number: int
    mass_amu: float
    lattice_A: float
    structure: str = "fcc"
    c_over_a: float | None = None
    composition: Composition | None = None
    """The elements sharing the sites (None: ``element`` alone)."""

    @property
    def elements(self) -> tuple[str, ...]:
        """The chemical symbols of the box: the composition's, else ``(element,)``."""
        return self.composition.elements if self.composition is not None else (self.element,)

    def mass_of(self, element: str) -> float:
        """The mass of an atom of ``element`` in this material, amu: the composition's, this
        material's own for its element, else the element's standard mass."""
        c = self.composition
        if c is not None and element in c.elements:
            return c.masses_amu[c.elements.index(element)]
        return self.mass_amu if element == self.element else standard_mass_amu(element)

    def atom_masses(self, species) -> np.ndarray:
        """The mass of each atom of atomic numbers ``species`` (N,), amu (:meth:`mass_of`
        of its element; one look-up per element)."""
        zs, inverse = np.unique(np.asarray(species, dtype=np.int64), return_inverse=True)
        per_z = np.array([self.mass_of(ase.data.chemical_symbols[z]) for z in zs], dtype=float)
        return per_z[inverse.reshape(-1)]

    @property
    def lattice(self) -> Lattice:
        return LATTICES[self.structure]

    @property
    def c_over_a_or_ideal(self) -> float:
        """c/a of the boxes: ``c_over_a``, else the ideal hcp value (1 for cubic lattices)."""
        if self.structure != "hcp":
            return 1.0
        return self.c_over_a if self.c_over_a is not None else IDEAL_C_OVER_A

    @property
    def cell_A(self) -> tuple[float, float, float]:
        """Edges of the orthogonal conventional cell, Å."""
        return self.lattice.cell_A(self.lattice_A, self.c_over_a_or_ideal)

    @property
    def atoms_per_cell(self) -> int:
        return self.lattice.atoms_per_cell

    @property
    def number_density_per_A3(self) -> float:
        """Atoms per Å³ of the perfect crystal at ``lattice_A``."""
        return self.atoms_per_cell / math.prod(self.cell_A)

    @property
    def nearest_neighbour_A(self) -> float:
        """Nearest-neighbour distance of the perfect crystal, Å (a/√2 for FCC)."""
        return self.lattice.nearest_neighbour(self.c_over_a_or_ideal) * self.lattice_A

    @property
    def cna_cutoff_A(self) -> float:
        """``cna/atom`` cutoff, Å: between the shells CNA counts and the next (0.854 a for
        FCC)."""
        return self.lattice.cna_cutoff * self.lattice_A

    def with_lattice(self, lattice_A: float, c_over_a: float | None = None) -> Material:
        """The same element in a box of another lattice constant (a strained or expanded box;
        hcp: and c/a, when given)."""
        c = self.c_over_a if c_over_a is None else float(c_over_a)
        return replace(self, lattice_A=float(lattice_A), c_over_a=c)


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


def atomic_number(element: str, where: str = "element") -> int:
    """The atomic number of a chemical symbol ("Cu" → 29); a clear error for anything else."""
    z = ase.data.atomic_numbers.get(element, 0) if isinstance(element, str) else 0
    if z < 1:
        raise ValueError(f"{where}: {element!r} is not a chemical element symbol (e.g. Al, Cu, W)")
    return z


def standard_mass_amu(element: str, where: str = "element") -> float:
    """The mass the package gives an atom of ``element``, amu: the :data:`MATERIALS` record's
    where it has one (Al 26.9815), else ASE's standard atomic weight (``ase.data``)."""
    if element in MATERIALS:
        return MATERIALS[element].mass_amu
    return float(ase.data.atomic_masses[atomic_number(element, where)])


def tabulated_lattice_A(element: str, structure: str) -> float | None:
    """The lattice constant the package keeps for ``element`` in ``structure``, Å, where
    :data:`MATERIALS` has one (Al fcc: 4.05 Å, the paper's); else None (the generator finds
    it by a 0-K relaxation with the potential)."""
    known = MATERIALS.get(element)
    return known.lattice_A if known is not None and known.structure == structure else None


def guess_lattice_A(element: str, structure: str) -> tuple[float, float | None]:
    """A starting guess of (a, c/a) for a relaxation, Å: the volume per atom of ASE's
    reference state of the element (``ase.data.reference_states``) put into ``structure``
    (c/a: the element's own for hcp where it is hcp, else the ideal one). Good to a few %
    for the metals; the relaxation does the rest."""
    z = atomic_number(element)
    lat = LATTICES[structure]
    ref = ase.data.reference_states[z] or {}
    a_ref, symmetry = ref.get("a"), ref.get("symmetry")
    ca = ref.get("c/a") if structure == "hcp" and symmetry == "hcp" else None
    c_over_a = (ca or IDEAL_C_OVER_A) if structure == "hcp" else None
    if symmetry in LATTICES and a_ref:
        ref_lat = LATTICES[symmetry]
        ref_ca = ref.get("c/a", IDEAL_C_OVER_A) if symmetry == "hcp" else 1.0
        volume = math.prod(ref_lat.cell_A(a_ref, ref_ca)) / ref_lat.atoms_per_cell
    else:  # no crystal reference: touching spheres of the covalent radius in fcc packing
        d = 2.0 * float(ase.data.covalent_radii[z])
        volume = d**3 / math.sqrt(2.0)
    per_a3 = math.prod(lat.cell_A(1.0, c_over_a or 1.0)) / lat.atoms_per_cell
    return (volume / per_a3) ** (1.0 / 3.0), c_over_a


def element_material(
    element: str,
    structure: str = "fcc",
    lattice_A: float | None = None,
    mass_amu: float | None = None,
    c_over_a: float | None = None,
    where: str = "element",
) -> Material:
    """A :class:`Material` of any chemical element in ``structure`` (one of
    :data:`LATTICES`): the mass given or :func:`standard_mass_amu`; the lattice constant
    given, else :func:`tabulated_lattice_A`, else :func:`guess_lattice_A` (to be relaxed);
    hcp's c/a given, else the guess's."""
    z = atomic_number(element, where)
    if structure not in LATTICES:
        raise ValueError(f"lattice {structure!r}: expected one of {', '.join(LATTICES)}")
    a = lattice_A if lattice_A is not None else tabulated_lattice_A(element, structure)
    guess_a, guess_ca = guess_lattice_A(element, structure)
    if a is None:
        a = guess_a
    if structure == "hcp" and c_over_a is None and lattice_A is None:
        c_over_a = guess_ca
    base = MATERIALS.get(element)
    out = Material(
        element=element,
        atomic_number=z,
        mass_amu=float(mass_amu) if mass_amu is not None else standard_mass_amu(element, where),
        lattice_A=float(a),
        structure=structure,
        c_over_a=float(c_over_a) if structure == "hcp" and c_over_a is not None else None,
    )
    return base if out == base else out


def alloy_material(
    elements: Sequence[str],
    fractions: Sequence[float],
    structure: str = "fcc",
    lattice_A: float | None = None,
    c_over_a: float | None = None,
    where: str = "element",
) -> Material:
    """A random substitutional alloy of ``elements`` (LAMMPS type order) in the atom
    ``fractions`` on ``structure``'s sites, each element with its standard mass
    (:func:`standard_mass_amu`). The lattice constant given, else a composition-weighted
    guess to be relaxed: the mean volume per atom of every element's own guess in
    ``structure`` (:func:`guess_lattice_A`; Vegard's law on the volume)."""
    elements = tuple(elements)
    host = element_material(elements[0], structure, lattice_A, None, c_over_a, where)
    masses = tuple(standard_mass_amu(e, where) for e in elements)
    composition = Composition(elements, tuple(float(x) for x in fractions), masses)
    a = host.lattice_A
    if lattice_A is None:
        cubes = [guess_lattice_A(e, structure)[0] ** 3 for e in elements]
        a = float(np.dot(composition.fractions, cubes)) ** (1.0 / 3.0)
    mean_mass = float(np.dot(composition.fractions, masses))
    return replace(host, lattice_A=a, mass_amu=mean_mass, composition=composition)

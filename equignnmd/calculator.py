"""One typed description of an ASE calculator used as the reference: :class:`AseCalculator`.

``equignnmd generate --calculator module:factory`` names a callable (a class or a function)
that returns an ASE calculator, e.g. ``ase.calculators.emt:EMT``; the module is imported by
name when a calculator is needed (:meth:`AseCalculator.make`), so the package imports nothing
of the user's at its own import. :meth:`AseCalculator.parse` checks the spec, imports the
module, calls the factory once and tries a single point of every element of the box before
anything is written; every error names the option and what was expected. ``generate`` records
it in ``dataset.json`` (field ``calculator``, :meth:`AseCalculator.to_dict`); whatever later
runs the dataset's reference rebuilds it from there (:func:`dataset_calculator`).

A factory is called without arguments: a calculator that needs settings is wrapped by a
function of the user's own module (``mymodule:my_calculator``), which is what gets recorded.

A *named* reference (``--calculator sevennet-0``; the table is
:data:`equignnmd.mlip.NAMED_CALCULATORS`) stands for the package's own factory of a
machine-learned potential of an optional extra: :meth:`AseCalculator.parse` resolves it, says
how to install the extra when its package is missing, and records its ``named`` name and its
``provenance`` (the package's version, the weights file and its SHA-256); :meth:`make` refuses
weights whose SHA-256 is not the recorded one.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase
import numpy as np

from .mlip import NAMED_CALCULATORS, named_calculator
from .provenance import file_sha256

__all__ = ["AseCalculator", "dataset_calculator"]

OPTION = "field 'calculator' (--calculator)"
"""How messages name the setting."""
EXAMPLE = "'ase.calculators.emt:EMT'"
NAMES = ", ".join(NAMED_CALCULATORS)
"""The named references ``--calculator`` takes besides ``MODULE:FACTORY``."""
PROBE_BOX_A = 8.0
"""Edge of the periodic cube of the single point that checks every element, Å."""


@dataclass(frozen=True)
class AseCalculator:
    """An ASE calculator made by calling ``factory`` (``"module:attribute"``, the attribute
    a callable without arguments that returns a calculator); ``name`` is the class name of
    what it returned and ``ase_version`` ASE's version when it was recorded. A named
    reference (:mod:`equignnmd.mlip`) has its ``named`` name and its ``provenance`` (key,
    value pairs: package version, weights file and SHA-256, cutoff)."""

    factory: str
    name: str = ""
    ase_version: str = ""
    named: str = ""
    """the named reference this stands for (``sevennet-0``), else empty"""
    provenance: tuple[tuple[str, str], ...] = ()
    """what makes a named reference reproducible
    (:meth:`equignnmd.mlip.NamedCalculator.provenance`), else empty"""

    @classmethod
    def parse(cls, spec: str, elements: Sequence[str] = (), where: str = OPTION) -> AseCalculator:
        """The record of ``spec`` with its calculator made once (:meth:`make`) and, given
        ``elements``, a single point of one atom of each in a periodic
        :data:`PROBE_BOX_A`-Å cube (:meth:`check_elements`). ValueError naming ``where``
        otherwise. A named reference (``sevennet-0``) is resolved to its factory, its package
        required (the message names the extra to install) and its provenance recorded."""
        named = named_calculator(spec)
        if named is not None:
            named.require(where)
            record = cls(named.factory, named=named.name)
        else:
            record = cls(str(spec).strip())
        calculator = record.make(where)
        provenance = ()
        if named is not None:
            cutoff = getattr(calculator, "cutoff", None)
            provenance = tuple(named.provenance(cutoff).items())
        made = cls(
            record.factory, type(calculator).__name__, ase.__version__, record.named, provenance
        )
        if elements:
            made.check_elements(elements, calculator, where)
        return made

    def _parts(self, where: str) -> tuple[str, str]:
        module, sep, attribute = self.factory.partition(":")
        if not sep or not module.strip() or not attribute.strip() or ":" in attribute:
            raise ValueError(
                f"{where} = {self.factory!r}: expected MODULE:FACTORY, a module to import and "
                f"a callable in it that returns an ASE calculator, e.g. {EXAMPLE}, or a named "
                f"reference ({NAMES})"
            )
        return module.strip(), attribute.strip()

    def make(self, where: str = OPTION):
        """A new calculator: the module imported by name, the factory called without
        arguments. ValueError naming ``where`` when the module or factory is missing, the
        factory is not callable, or what it returns is no ASE calculator; for a named
        reference, also when its package is not installed or its weights are not the
        recorded ones (:meth:`equignnmd.mlip.NamedCalculator.check`)."""
        if self.named:
            named = named_calculator(self.named)
            if named is None:
                raise ValueError(
                    f"{where}: named reference {self.named!r} is not one this equignnmd knows; "
                    f"expected one of {NAMES}"
                )
            named.require(where)
            named.check(dict(self.provenance), where)
        module_name, attribute = self._parts(where)
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(
                f"{where} = {self.factory!r}: module {module_name!r} cannot be imported "
                f"({err}); expected an importable module, e.g. {EXAMPLE}"
            ) from None
        factory = module
        for name in attribute.split("."):
            if not hasattr(factory, name):
                raise ValueError(
                    f"{where} = {self.factory!r}: module {module_name!r} has no {attribute!r}; "
                    "expected a callable of that name that returns an ASE calculator"
                )
            factory = getattr(factory, name)
        if not callable(factory):
            raise ValueError(
                f"{where} = {self.factory!r}: {attribute!r} is a {type(factory).__name__}, not "
                "callable; expected a class or function that returns an ASE calculator"
            )
        try:
            calculator = factory()
        except Exception as err:  # noqa: BLE001 - a user's code: say where it failed
            raise ValueError(
                f"{where} = {self.factory!r}: calling {attribute}() failed "
                f"({type(err).__name__}: {err}); expected a callable without arguments that "
                "returns an ASE calculator (wrap one that needs settings in a function)"
            ) from None
        missing = [m for m in ("get_potential_energy", "get_forces") if not hasattr(calculator, m)]
        if missing:
            raise ValueError(
                f"{where} = {self.factory!r}: {attribute}() returned a "
                f"{type(calculator).__name__}, which has no {' or '.join(missing)}; expected "
                "an ASE calculator"
            )
        return calculator

    def check_elements(self, elements: Sequence[str], calculator=None, where: str = OPTION):
        """A single point of one atom of every element of ``elements`` in a periodic cube:
        ValueError naming the elements and the calculator when it fails or is not finite
        (EMT, for one, knows Al, Cu, Ni, Ag, Au, Pd, Pt only)."""
        calculator = calculator if calculator is not None else self.make(where)
        n = len(elements)
        # a line along the cube's diagonal, 2.5 Å apart: every pair within a typical cutoff
        positions = np.outer(np.arange(n) + 0.5, np.ones(3)) * (2.5 / math.sqrt(3.0))
        atoms = ase.Atoms(
            symbols=list(elements), positions=positions, cell=[PROBE_BOX_A] * 3, pbc=True
        )
        atoms.calc = calculator
        try:
            energy = float(atoms.get_potential_energy())
            forces = np.asarray(atoms.get_forces())
        except Exception as err:  # noqa: BLE001 - whatever the calculator raises
            raise ValueError(
                f"{where} = {self.factory!r}: a single point of {', '.join(elements)} failed "
                f"({type(err).__name__}: {err}); field 'element' (--elements): expected "
                "elements the calculator knows"
            ) from None
        if not (math.isfinite(energy) and np.isfinite(forces).all()):
            raise ValueError(
                f"{where} = {self.factory!r}: a single point of {', '.join(elements)} gave a "
                "non-finite energy or force; field 'element' (--elements): expected elements "
                "the calculator knows"
            )

    @staticmethod
    def implements(calculator, prop: str) -> bool:
        """Whether ``calculator`` says it computes ``prop`` (``stress``, ``energies``); a
        calculator that lists nothing is asked and assumed not to."""
        return prop in (getattr(calculator, "implemented_properties", None) or ())

    @property
    def description(self) -> str:
        """``"ASE EMT (ase.calculators.emt:EMT)"``; ``"ASE SevenNetCalculator (sevennet-0)"``
        for a named reference."""
        return f"ASE {self.name or 'calculator'} ({self.named or self.factory})"

    def fingerprint(self) -> str:
        """What the calculator's results depend on, as a hex digest: the factory, the
        SHA-256 of its module's file where it has one, and ASE's version; for a named
        reference its name, its provenance (weights by SHA-256, the package's version) and
        ASE's version, so that an edit of this package's code keeps a long generation's
        finished files reusable (``--resume``)."""
        if self.named:
            text = f"{self.named}\n{sorted(self.provenance)}\n{self.ase_version or ase.__version__}"
            return hashlib.sha256(text.encode()).hexdigest()
        module_name, _ = self._parts(OPTION)
        module = importlib.import_module(module_name)
        source = getattr(module, "__file__", None)
        code = file_sha256(source) if source and Path(source).is_file() else ""
        text = f"{self.factory}\n{code}\n{self.ase_version or ase.__version__}"
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict:
        """The JSON record of ``dataset.json`` (field ``calculator``); a named reference's
        also ``named`` and ``provenance`` (a dict)."""
        record = {"factory": self.factory, "name": self.name, "ase_version": self.ase_version}
        if self.named:
            record |= {"named": self.named, "provenance": dict(self.provenance)}
        return record

    @classmethod
    def from_dict(cls, record: dict | str, where: str = "dataset.json") -> AseCalculator:
        """The calculator of a :meth:`to_dict` record (or a bare ``module:factory``)."""
        if isinstance(record, str):
            return cls(record)
        if not isinstance(record, dict) or not record.get("factory"):
            raise ValueError(
                f"{where}: field 'calculator' is {record!r}; expected a record with "
                "'factory' (MODULE:FACTORY) as equignnmd generate writes it"
            )
        provenance = record.get("provenance") or {}
        if not isinstance(provenance, dict):
            raise ValueError(
                f"{where}: field 'calculator.provenance' is {provenance!r}; expected a record "
                "of strings as equignnmd generate writes it"
            )
        return cls(
            str(record["factory"]),
            str(record.get("name", "")),
            str(record.get("ase_version", "")),
            str(record.get("named", "")),
            tuple((str(k), str(v)) for k, v in provenance.items()),
        )


def dataset_calculator(meta: dict, where: str = "dataset.json") -> AseCalculator | None:
    """The reference calculator of a dataset's index (``dataset.json`` as a dict), or None
    when its reference is not an ASE calculator."""
    record = meta.get("calculator")
    return AseCalculator.from_dict(record, where) if record else None

"""Named machine-learned references: ``--calculator sevennet-0``.

The one place that knows the machine-learned potentials the package can run as a reference by
name, without a ``MODULE:FACTORY`` of the user's. Each is a :class:`NamedCalculator` in
:data:`NAMED_CALCULATORS`: its factory (a function here that builds the ASE calculator), the
package of the optional extra that brings it (``pip install 'equignnmd[mlip]'``, pinned in
``pyproject.toml``) and what makes it reproducible (:meth:`NamedCalculator.provenance`: the
package's version, the weights file and its SHA-256), which ``generate`` records in
``dataset.json`` (field ``calculator``) and every later use checks
(:meth:`NamedCalculator.check`). :class:`~equignnmd.calculator.AseCalculator` resolves the
names (:meth:`~equignnmd.calculator.AseCalculator.parse`), so a name works wherever
``--calculator`` and a dataset's own reference do: ``generate`` (``--estimate`` too), the
Taylor baseline, ``rollout --energy reference``, ``fidelity --reference``, replay labelling.

=============  ========================================================================
``sevennet-0`` SevenNet-0 (checkpoint of 11 Jul 2024, trained on MPtrj: PBE/PBE+U, 89
               elements, cutoff 5 Å), the checkpoint that ships inside the ``sevenn``
               wheel (no network); CPU, float32, torch's thread count as set
               (``OMP_NUM_THREADS``, ``torch.set_num_threads``)
=============  ========================================================================

Nothing here imports the extra's package at the package's own import: it is imported when a
calculator is made.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .provenance import file_sha256

__all__ = ["NAMED_CALCULATORS", "NamedCalculator", "named_calculator", "sevennet_0"]

EXTRA = "mlip"
"""The optional extra of ``pyproject.toml`` that brings the named calculators' packages."""
INSTALL = f"pip install 'equignnmd[{EXTRA}]'"


@dataclass(frozen=True)
class NamedCalculator:
    """A machine-learned potential the package runs by ``name``."""

    name: str
    """what ``--calculator`` takes, lower case (``sevennet-0``)"""
    factory: str
    """``MODULE:FUNCTION`` that builds it (called without arguments), in this module"""
    package: str
    """the importable package that runs it (``sevenn``)"""
    pinned: str
    """the version the extra pins (``0.13.0``)"""
    weights: Callable[[], Path]
    """the weights file the factory loads (the package imported)"""
    title: str
    """how tables name it (``SevenNet-0``)"""

    def require(self, where: str) -> None:
        """Import :attr:`package`: ValueError naming ``where`` and the extra when it is not
        installed."""
        try:
            importlib.import_module(self.package)
        except ImportError as err:
            raise ValueError(
                f"{where} = {self.name!r}: {self.title} needs the package {self.package!r}, "
                f"which cannot be imported ({err}); expected it installed: {INSTALL} "
                f"({self.package}=={self.pinned}, CPU torch kept)"
            ) from None

    def provenance(self, cutoff_A: float | None = None) -> dict[str, str]:
        """What makes this reference reproducible: the package and its installed version, the
        weights file (its path inside the package) and its SHA-256, and, given, the model's
        cutoff (Å). The package must be importable (:meth:`require`)."""
        path = self.weights()
        root = Path(importlib.import_module(self.package).__file__).parent.parent
        try:
            shown = str(path.relative_to(root))
        except ValueError:
            shown = str(path)
        record = {
            "package": self.package,
            "package_version": importlib.metadata.version(self.package),
            "weights": shown,
            "weights_sha256": _sha256(str(path)),
        }
        if cutoff_A is not None:
            record["cutoff_A"] = f"{float(cutoff_A):g}"
        return record

    def check(self, recorded: dict[str, str], where: str) -> None:
        """ValueError naming ``where`` when the installed weights are not the recorded ones
        (by SHA-256); a different package version with the same weights only warns."""
        if not recorded:
            return
        now = self.provenance()
        want = recorded.get("weights_sha256")
        if want and want != now["weights_sha256"]:
            version = recorded.get("package_version", self.pinned)
            raise ValueError(
                f"{where}: reference {self.name!r} was recorded with {recorded.get('weights')} "
                f"of SHA-256 {want} ({self.package} {version}); the installed {self.package} "
                f"{now['package_version']} has {now['weights']} of SHA-256 "
                f"{now['weights_sha256']}; expected the same weights: pip install "
                f"{self.package}=={version}"
            )
        version = recorded.get("package_version")
        if version and version != now["package_version"]:
            warnings.warn(
                f"{where}: reference {self.name!r} was recorded with {self.package} {version}, "
                f"{now['package_version']} is installed (the same weights, by SHA-256)",
                stacklevel=3,
            )


@lru_cache(maxsize=8)
def _sha256(path: str) -> str:
    """SHA-256 of a weights file, once per process (a named reference is made often)."""
    return file_sha256(path)


def _sevennet_0_weights() -> Path:
    """The SevenNet-0 checkpoint of 11 Jul 2024 inside the installed ``sevenn`` (what its
    name ``7net-0`` resolves to, never a download)."""
    from sevenn.util import pretrained_name_to_path

    return Path(pretrained_name_to_path("7net-0"))


def sevennet_0():
    """SevenNet-0 as an ASE calculator (``sevenn.calculator.SevenNetCalculator`` of the
    checkpoint in the ``sevenn`` wheel), on the CPU: energies eV, forces eV/Å, stress eV/Å³,
    per-atom energies eV. It runs on torch's intra-op threads as this process has set them
    (``OMP_NUM_THREADS``, ``torch.set_num_threads``); building it leaves the count as it was.
    sevenn's warning that no tensor-product accelerator (a GPU kernel) is enabled is
    silenced: there is none on a CPU."""
    import torch

    threads = torch.get_num_threads()
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No tensor product accelerator", UserWarning)
        calculator = SevenNetCalculator(
            str(_sevennet_0_weights()), file_type="checkpoint", device="cpu"
        )
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return calculator


NAMED_CALCULATORS: dict[str, NamedCalculator] = {
    "sevennet-0": NamedCalculator(
        name="sevennet-0",
        factory=f"{__name__}:sevennet_0",
        package="sevenn",
        pinned="0.13.0",
        weights=_sevennet_0_weights,
        title="SevenNet-0",
    ),
}
"""The named references, by the name ``--calculator`` takes."""


def named_calculator(spec: str) -> NamedCalculator | None:
    """The named reference ``spec`` stands for (case and surrounding spaces ignored), or None
    when it names none (a ``MODULE:FACTORY``)."""
    return NAMED_CALCULATORS.get(str(spec).strip().lower())

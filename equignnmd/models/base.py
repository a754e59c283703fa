"""The one interface every architecture implements.

A model maps a batch of periodic systems (a PyG ``Batch`` built by
:func:`equignnmd.graph.make_data`) to the displacement of every atom over the batch's stride
Δt and its velocity at t + Δt. Everything else in the package — trainer, checkpoints, rollout,
evaluation — talks to models only through this class.

Batch fields read by models (units in brackets):

* ``pos`` (N, 3) wrapped positions [Å]; ``vel`` (N, 3) velocities [Å/ps]
* ``species`` (N,) atomic numbers; ``mass`` (N,) [amu]; ``batch`` (N,) graph index
* ``cell`` (B, 3, 3) rows are lattice vectors [Å]
* ``dt_fs`` (B,) stride [fs]; ``temperature_K`` (B,) thermostat set point / label [K]
* ``descriptors`` (N, 5) optional: [CSP, CNA, Q4, Q6, CN] (see :mod:`equignnmd.descriptors`)

Normalisation statistics (:class:`~equignnmd.data.stats.TrainingStats`) are computed from the
training split only and passed to the constructor, so they travel inside the checkpoint with the
hyperparameters. Hyperparameters are a typed dataclass per architecture (``config_class``),
checked field by field by :func:`~equignnmd.config.check_hparams` when a model is built (from a
YAML config, from ``build_model`` keywords or from a checkpoint).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from ..config import check_hparams
from ..data.stats import TrainingStats  # re-exported: ``equignnmd.models.base.TrainingStats``

FINE_TUNABLE = ("temperature_conditioning", "compile", "use_cueq")
"""Model settings a fine-tuning run (``init_from``) may change: they leave the state dict as
it is (a species expansion, ``EquivariantModel.expand_species``, may change them too)."""

__all__ = ["EnergyPart", "Prediction", "SurrogateModel", "TrainingStats"]

# The paper's graph cutoff R_cut (Immanuel, Mahata & Maiti, arXiv 2512.21822, Table 2; see
# docs/paper-architecture.md): the cutoff of the Mishin Al99 EAM potential the paper's
# data come from, between the 4th and 5th FCC Al shells (5.73 and 6.40 Å at a0 = 4.05 Å).


@dataclass(frozen=True)
class EnergyPart:
    """A checkpoint's own potential energy, a named part of it (``energy_head`` in the file):
    the fitted ``head`` (an :class:`~equignnmd.potential.eam.EnergyHead`, on the CPU in
    float64) and the ``fit`` report. A plain object, not a submodule: it is not in the model's
    ``state_dict()`` and ``.to()`` / ``.float()`` leave its sub-meV precision alone."""

    head: Any
    fit: dict


class Prediction(NamedTuple):
    """Model output: ``displacement`` (N, 3) Å and ``velocity`` (N, 3) Å/ps at t + Δt.

    ``velocity`` is ``None`` for a model that predicts positions only (the paper's original
    set-up); rollouts then use finite-difference velocities and say so.
    """

    displacement: torch.Tensor
    velocity: torch.Tensor | None


class SurrogateModel(nn.Module):
    """Base class: subclasses set ``arch`` (and ``config_class``) and implement :meth:`forward`.

    ``config_class`` is the architecture's hyperparameter dataclass; with one, the constructor
    takes an instance of it or a dict of its fields (checked by
    :func:`~equignnmd.config.check_hparams`; missing fields take their defaults). Without one
    (test doubles) ``config`` is kept as given.

    Attributes set in ``__init__``:
        hparams: the checked ``config_class`` instance (``None`` without a ``config_class``).
        config: JSON-able dict of the hyperparameters it was built with (what ``build_model``
            needs to rebuild it; stored in checkpoints).
        stats: :class:`TrainingStats`.
        cutoff: graph cutoff, Å.
        needs_descriptors: whether ``batch.descriptors`` must be present.
        predicts_velocity: whether ``forward`` returns velocities.
        projects_momentum: whether ``forward`` removes per-graph mass-weighted means from
            its learned parts (a global step: conserves momentum by construction).
        centre_per_graph: with ``projects_momentum``, ``False`` skips that removal, so a
            caller that holds only part of a system (one MPI rank's atoms,
            :mod:`equignnmd.lammps`) can remove the means of the whole system itself.
    """

    arch: str = "base"
    config_class: ClassVar[type | None] = None
    needs_descriptors: bool = False
    predicts_velocity: bool = True
    projects_momentum: ClassVar[bool] = False
    centre_per_graph: bool = True

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """The default hyperparameters as a dict (the fields of ``config_class``)."""
        if cls.config_class is None:
            return {}
        return dataclasses.asdict(cls.config_class())

    def __init__(self, config: Any, stats: TrainingStats | None = None):
        super().__init__()
        self.hparams = None
        if self.config_class is not None:
            self.hparams = check_hparams(self.config_class, config, f"{self.arch} model config")
            config = dataclasses.asdict(self.hparams)
        self.config = dict(config)
        self.stats = stats if stats is not None else TrainingStats()
        self.energy_part: EnergyPart | None = None  # attach_energy_head
        # the training states' box of per-atom densities (equignnmd.novelty.NoveltyBox; the
        # checkpoint part "novelty"): rollouts warn when atoms leave it
        self.novelty_box = None
        if "cutoff" not in self.config:  # each architecture's config_class has its default
            raise ValueError(
                f"{self.arch} model config: field 'cutoff' is missing; expected the graph cutoff, Å"
            )
        self.cutoff = float(self.config["cutoff"])

    @property
    def temperature_conditioned(self) -> bool:
        """Whether the model reads the temperature label (config ``temperature_conditioning``;
        off for new models, on for checkpoints older than the switch). The map (r, v) →
        (r′, v′) of a Hamiltonian system needs no temperature; a model that reads one can learn
        a shortcut that breaks between the training temperatures."""
        return bool(self.config.get("temperature_conditioning", False))

    def temperature_input(self, temperature_K: torch.Tensor) -> torch.Tensor:
        """(B,) K: the label as given, or — not conditioned — one fixed value (the middle of
        the training range), so the temperature features become a learned constant and the
        state dict stays that of a conditioned model (a conditioned checkpoint can be
        fine-tuned into an unconditioned one)."""
        if self.temperature_conditioned:
            return temperature_K
        lo, hi = self.stats.temperature_range_K
        return torch.full_like(temperature_K, 0.5 * (float(lo) + float(hi)))

    def forward(self, batch) -> Prediction:  # pragma: no cover - abstract
        raise NotImplementedError

    def compiled(self, **kwargs) -> SurrogateModel:
        """torch.compile(dynamic=True) of the whole forward, in place; returns the model.

        Architectures override it where a graph break (the neighbour list) would recompile
        every step; the first paragraph of each override's docstring says what it compiles
        (benchmarks print it beside compiled rows)."""
        kwargs.setdefault("dynamic", True)
        self.compile(**kwargs)
        return self

    @property
    def energy_head(self):
        """The checkpoint's learned potential energy (an
        :class:`~equignnmd.potential.eam.EnergyHead`), or ``None`` (:class:`EnergyPart`)."""
        return None if self.energy_part is None else self.energy_part.head

    @property
    def energy_head_fit(self) -> dict | None:
        """The fit report of the attached energy head (scores, data), or ``None``."""
        return None if self.energy_part is None else self.energy_part.fit

    def attach_energy_head(self, head, fit: dict | None = None) -> None:
        """Attach (or, with ``None``, remove) an energy head and the report of its fit."""
        if head is None:
            self.energy_part = None
            return
        if float(head.cutoff) > float(self.cutoff) + 1e-9:
            raise ValueError(
                f"energy head cutoff {head.cutoff} Å is larger than the model's "
                f"{self.cutoff} Å; expected at most the model's (its box check covers both)"
            )
        self.energy_part = EnergyPart(head.to("cpu", torch.float64).eval(), dict(fit or {}))

    def interaction_layers(self) -> list[nn.Module]:
        """The repeated message-passing layers, in order (profilers time them by class)."""
        return []

    def receptive_field_A(self, dt_fs: float) -> float:
        """How far one stride's prediction for an atom can look, Å: interaction layers ×
        cutoff, plus the model's ``skin`` if it has one (the ``paper`` model's blocks each
        read the graph anew; the skin covers their moves). MPI runs inside LAMMPS give every
        rank's atoms this much of their surroundings."""
        layers = max(1, len(self.interaction_layers()))
        skin = float(getattr(self, "skin", 0.0) or 0.0)
        return layers * float(self.cutoff) + skin

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare(self, batch):
        """Fill in what the model needs but the caller may not have (e.g. descriptors)."""
        if self.needs_descriptors and getattr(batch, "descriptors", None) is None:
            from ..descriptors import compute_descriptors

            batch.descriptors = compute_descriptors(batch.pos, batch.cell, batch.batch)
        return batch

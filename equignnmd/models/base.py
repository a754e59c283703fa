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
checked field by field by :func:`check_hparams` when a model is built (from a YAML config, from
``build_model`` keywords or from a checkpoint).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from ..config import ConfigError, build
from ..data.stats import TrainingStats  # re-exported: ``equignnmd.models.base.TrainingStats``

__all__ = ["PAPER_CUTOFF_A", "Prediction", "SurrogateModel", "TrainingStats", "check_hparams"]

# The paper's graph cutoff R_cut (Immanuel, Mahata & Maiti, arXiv 2512.21822, Table 2; see
# docs/paper-architecture.md): the cutoff of the Mishin Al99 EAM potential the paper's
# data come from, between the 4th and 5th FCC Al shells (5.73 and 6.40 Å at a0 = 4.05 Å).
PAPER_CUTOFF_A = 6.287
"""The paper's graph cutoff, Å; the default of a model whose config names no cutoff."""


def check_hparams(config_class: type, values: Any, source: str, consistent: bool = True):
    """``values`` (a dict of fields, or already a ``config_class``) as a checked
    ``config_class`` instance.

    Raises :class:`~equignnmd.config.ConfigError` naming ``source`` (a config file, a
    checkpoint, a call) and the field: an unknown (e.g. misspelt) field with the closest known
    names, or a value of the wrong type or range with what was expected (the dataclass's
    ``validate``); with ``consistent`` also a violated constraint between fields (its
    ``check_consistency``, if it has one), as a model built from these values would.
    """
    if isinstance(values, config_class):
        values = dataclasses.asdict(values)
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of hyperparameters, got {values!r}")
    known = sorted(f.name for f in dataclasses.fields(config_class))
    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            if close:
                hints.append(f"{key!r} → {close[0]!r}?")
        hint = f" (did you mean {', '.join(hints)})" if hints else ""
        raise ConfigError(
            f"{source}: unknown hyperparameter field(s) {unknown}{hint}; expected fields of "
            f"{config_class.__name__}: {known}"
        )
    hparams = build(config_class, dict(values), source)
    if consistent and hasattr(hparams, "check_consistency"):
        hparams.check_consistency(source)
    return hparams


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
    takes an instance of it or a dict of its fields (checked by :func:`check_hparams`; missing
    fields take their defaults). Without one (test doubles) ``config`` is kept as given.

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
        self.cutoff = float(config.get("cutoff", PAPER_CUTOFF_A))

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

    compiled_note = "torch.compile(dynamic=True) of the whole forward"
    """What :meth:`compiled` compiles (benchmarks print it beside compiled rows)."""

    def compiled(self, **kwargs) -> SurrogateModel:
        """Compile the model's compute with ``torch.compile`` (``dynamic=True`` by default),
        in place, the way its architecture supports; returns the model. The default compiles
        the whole module; architectures override it where a graph break (the neighbour list)
        would recompile every step."""
        kwargs.setdefault("dynamic", True)
        self.compile(**kwargs)
        return self

    @property
    def energy_head(self):
        """The checkpoint's learned potential energy (an
        :class:`~equignnmd.models.energy_head.EnergyHead`), or ``None``. It is kept outside the
        module tree, on the CPU in float64 whatever the model's device and dtype: it is not in
        ``state_dict()`` (checkpoints store it in a section of their own) and ``.to()`` /
        ``.float()`` leave its sub-meV precision alone."""
        return self.__dict__.get("_energy_head")

    def attach_energy_head(self, head, fit: dict | None = None) -> None:
        """Attach (or, with ``None``, remove) an energy head and the report of its fit."""
        if head is not None:
            if float(head.cutoff) > float(self.cutoff) + 1e-9:
                raise ValueError(
                    f"energy head cutoff {head.cutoff} Å is larger than the model's "
                    f"{self.cutoff} Å; expected at most the model's (its box check covers both)"
                )
            head = head.to("cpu", torch.float64).eval()
        self.__dict__["_energy_head"] = head
        self.__dict__["_energy_head_fit"] = dict(fit or {}) if head is not None else None

    @property
    def energy_head_fit(self) -> dict | None:
        """The fit report of the attached energy head (scores, data), or ``None``."""
        return self.__dict__.get("_energy_head_fit")

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

    @torch.inference_mode()
    def predict(self, atoms, dt_fs: float, temperature_K: float | None = None):
        """One step for one ``ase.Atoms`` with velocities.

        Returns ``(displacement, velocities)`` as NumPy arrays: displacement in Å, velocities
        in ASE units (Å per ASE time unit), computed in this model's dtype and device.
        ``temperature_K`` defaults to the instantaneous kinetic temperature of ``atoms``.
        """
        from torch_geometric.data import Batch

        from ..graph import check_box, make_data
        from ..units import fs_to_ps, velocity_from_ase, velocity_to_ase

        if temperature_K is None:
            # the label a rollout gives the same state (physics.temperature_label), not ASE's
            # get_temperature(), which keeps the centre-of-mass motion and counts 3N
            from ..physics import temperature_label

            temperature_K = float(
                temperature_label(
                    torch.as_tensor(velocity_from_ase(atoms.get_velocities())),
                    torch.as_tensor(atoms.get_masses()),
                )[0]
            )
        check_box(atoms.cell.array, self.cutoff, where="predict(atoms)")
        data = make_data(
            atoms.positions,
            velocity_from_ase(atoms.get_velocities()),
            atoms.cell.array,
            atoms.numbers,
            atoms.get_masses(),
            dt_fs=dt_fs,
            temperature_K=temperature_K,
            dtype=self.dtype,
        )
        batch = Batch.from_data_list([data]).to(self.device)
        out = self(self.prepare(batch))
        disp = out.displacement.double().cpu().numpy()
        if out.velocity is None:
            vel_A_ps = disp / fs_to_ps(dt_fs)
        else:
            vel_A_ps = out.velocity.double().cpu().numpy()
        return disp, velocity_to_ase(vel_A_ps)

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

Normalisation statistics (:class:`TrainingStats`) are computed from the training split only and
passed to the constructor, so they travel inside the checkpoint with the hyperparameters.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from ..data.stats import TrainingStats

__all__ = ["PAPER_CUTOFF_A", "Prediction", "SurrogateModel", "TrainingStats"]

PAPER_CUTOFF_A = 6.287
"""The paper spec's graph cutoff, Å (between the 4th and 5th FCC Al shells, 5.73 and 6.40 Å at
a0 = 4.05 Å); the default of a model whose config names no cutoff."""


class Prediction(NamedTuple):
    """Model output: ``displacement`` (N, 3) Å and ``velocity`` (N, 3) Å/ps at t + Δt.

    ``velocity`` is ``None`` for a model that predicts positions only (the paper's original
    set-up); rollouts then use finite-difference velocities and say so.
    """

    displacement: torch.Tensor
    velocity: torch.Tensor | None


class SurrogateModel(nn.Module):
    """Base class: subclasses set ``arch`` and implement :meth:`forward`.

    Attributes every subclass sets in ``__init__``:
        config: JSON-able dict of the hyperparameters it was built with (what ``build_model``
            needs to rebuild it).
        stats: :class:`TrainingStats`.
        cutoff: graph cutoff, Å.
        needs_descriptors: whether ``batch.descriptors`` must be present.
        predicts_velocity: whether ``forward`` returns velocities.
    """

    arch: str = "base"
    needs_descriptors: bool = False
    predicts_velocity: bool = True

    def __init__(self, config: dict[str, Any], stats: TrainingStats | None = None):
        super().__init__()
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

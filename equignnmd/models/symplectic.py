"""A symplectic stride: velocity Verlet over a learned, stride-dependent potential (arch
``"symplectic"``).

The ``equivariant`` model predicts (r′, v′) freely; its map is neither symplectic nor
time-reversible, and a small systematic error of that kind heats or cools a long NVE run
(docs/architectures.md). This architecture makes the map Hamiltonian by construction:
one stride Δt is n = ⌈Δt / ``max_substep_fs``⌉ kick–drift–kick steps of h = Δt / n,

    v ← v + ½ h F(r) / m,   r ← r + h v,   v ← v + ½ h F(r) / m,   F = −∇U_h(r),

over a learned potential U_h. Whatever U_h is, the map is symplectic and time-reversible
(flip v, step, flip v: back to the start, to rounding), conserves momentum exactly (U depends
on positions only through differences) and conserves a shadow energy: it cannot drift the way
a free-form map does, so the total energy only fluctuates.

U_h has the embedded-atom form of the energy head (:class:`~.energy_head.EnergyHead`: pair
functions on a Bessel basis, embedding polynomials of a few densities, optionally its fixed
core repulsion below the data's closest pair), with coefficients that depend on the step,

    c(h) = c_fit + s ⊙ Σ_k δ_k (h / h_max)^{2k},   k = 0 … ``stride_orders``,

where ``c_fit`` is a least-squares fit of the form to the recorded energies and forces
(:meth:`SymplecticModel.initialise_from_data`, called by the trainer on a fresh run), ``s`` a
per-coefficient scale that makes a unit δ move the forces by about their RMS over all
coefficients, and δ the trained parameters (zero at the start, so an untrained model is
velocity Verlet on the fitted potential); h_max is the longest step the training strides
need. Why a step-dependent potential: velocity Verlet on
the true potential at a large stride turns every vibration by too large an angle (for a mode
of frequency ω it turns by θ with cos θ = 1 − ω²h²/2, not by ωh) and goes unstable for
ωh > 2; the potential that turns it by the right angle is softer, ω²_eff = 2(1 − cos ωh)/h²
(≈ ω² − ω⁴h²/12: even powers of h, hence the polynomial in h²), is stable for ωh < π,
and is what training on the recorded (r, v) → (r′, v′) pairs pulls toward. A step no longer
than ``max_substep_fs`` keeps the fastest vibrations (~10 THz in Al) within reach of that
softening (10 fs by default: a 20-fs stride is two steps, a 50-fs stride five;
docs/studies/2026-12-06-issue-12-symplectic-v1.md has the measured alternatives).

Deviations and limits: the position update is r + v h + ½ h² F/m, so the part of a stride that
depends on the velocity is exactly v h: the one-step error cannot fall below what the
best potential can absorb (docs/studies/ gives the measured figures); a potential, not a network
reading velocities, so no temperature or velocity conditioning.

Forces: in training by automatic differentiation (the graph kept for the parameters'
gradients; the forward enables gradients itself, so it also runs under ``torch.no_grad`` and
``torch.inference_mode``); otherwise without autograd
(:meth:`~.energy_head.EnergyHead.energy_and_forces`), the pair and density functions of the
stride's coefficients read from cubic tables (``table_spacing_A``; built once per set of
coefficients, as LAMMPS tabulates an EAM file; forces equal the closed form's to ~1e-9
relative, so the cost per edge does not grow with the basis), over a Verlet list carried from
stride to stride; a stride that starts where the last one ended reuses its final forces: one
potential evaluation per step, as in velocity Verlet. Everything is float64 whatever the
parameters' dtype (the potential is tiny); the model's ``dtype`` is float64, and so are its
outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ConfigError
from ..data.stats import TrainingStats
from ..graph import VerletList
from ..potential import (
    FORM_FIELDS,
    TABLE_SPACING_A,
    EnergyFitConfig,
    EnergyHead,
    EnergyHeadConfig,
    design_matrix,
    fit_energy_head,
    load_energy_frames,
)
from ..units import FTM2V, fs_to_ps
from .base import Prediction, SurrogateModel

__all__ = ["SymplecticConfig", "SymplecticModel"]


@dataclass
class SymplecticConfig:
    """Hyperparameters of the ``symplectic`` architecture (lengths in Å)."""

    cutoff: float = 5.5
    """Radius of the potential's pair and density functions, Å."""
    num_radial: int = 12
    """Bessel functions of the pair term."""
    density_decays: list[float] = field(default_factory=lambda: [4.0, 8.0])
    """β_d of the densities exp(−β_d r / r_c) c(r)."""
    embedding_order: int = 4
    """Highest power of (ρ/ρ̄ − 1) in the embedding energy."""
    stride_orders: int = 2
    """Highest power k of (h / h_max)² in the coefficients' dependence on the step h."""
    max_substep_fs: float = 10.0
    """Longest kick–drift–kick step, fs: a stride is cut into the fewest equal steps no
    longer than this (each a force evaluation in a rollout, which reuses the last one)."""
    core_radius: float = 0.0
    """Å: below it the fitted pair function is continued quadratically and a fixed repulsion
    A (r_core − r)³ is added (0: neither; at the data's closest pair, below which the fitted
    form is unconstrained; :class:`EnergyHeadConfig`)."""
    core_strength: float = 0.0
    """A, eV/Å³, of the core repulsion."""
    stress_weight: float = 0.0
    """Weight of the stress rows in the potential's fit (:class:`~equignnmd.potential.fit.
    EnergyFitConfig`): the crystal's elastic constants, which set the box's longest waves;
    0: energies and forces only. Read once, by :meth:`SymplecticModel.initialise_from_data`."""
    table_spacing_A: float = TABLE_SPACING_A
    """Outside training, the pair and density functions are read from cubic tables with knots
    this far apart, Å (:class:`~.energy_head.RadialTable`: the cost per edge no longer grows
    with the basis); 0: the closed form every step. Not a trained quantity: changing it
    leaves the ``state_dict`` as it is."""

    def potential_fields(self) -> dict:
        """The energy head's and the fit's settings of this model (:data:`FORM_FIELDS`)."""
        return {k: (list(v) if isinstance(v := getattr(self, k), list) else v) for k in FORM_FIELDS}

    def validate(self, source: str) -> None:
        # the potential's fields are the energy head's: its checks, once
        EnergyHeadConfig(cutoff=self.cutoff, **self.potential_fields()).validate(source)
        if not self.max_substep_fs > 0:
            raise ConfigError(
                f"{source}: field 'max_substep_fs' is {self.max_substep_fs}; expected > 0"
            )
        if not 0.0 <= self.table_spacing_A < 0.1 * self.cutoff:
            raise ConfigError(
                f"{source}: field 'table_spacing_A' is {self.table_spacing_A}; expected 0 "
                "(closed form) or a knot spacing below a tenth of the cutoff, Å"
            )
        if not self.stress_weight >= 0:
            raise ConfigError(
                f"{source}: field 'stress_weight' is {self.stress_weight}; expected ≥ 0"
            )
        if self.stride_orders < 0:
            raise ConfigError(
                f"{source}: field 'stride_orders' is {self.stride_orders}; expected ≥ 0"
            )


class SymplecticModel(SurrogateModel):
    """Velocity Verlet over a learned stride-dependent EAM-form potential (module doc).

    Buffers in the ``state_dict`` (set by :meth:`initialise_from_data`):
    ``potential.coefficients`` (C,) c_fit, ``potential.density_scale`` (D,) ρ̄_d,
    ``coefficient_scale`` (C,) s. Parameter: ``stride_coefficients`` (K + 1, C) δ.
    """

    arch = "symplectic"
    config_class = SymplecticConfig
    needs_descriptors = False
    predicts_velocity = True

    def __init__(self, config: SymplecticConfig | dict, stats: TrainingStats | None = None):
        super().__init__(config, stats)
        c, st = self.hparams, self.stats
        if not st.species or not st.strides_fs:
            raise ValueError(
                "symplectic model: stats 'species' and 'strides_fs' must be non-empty "
                "(the training split's statistics)"
            )
        self.potential = EnergyHead(
            {
                "cutoff": c.cutoff,
                "species": [int(z) for z in st.species],
                **c.potential_fields(),
            }
        )
        n = self.potential.n_features
        self.h_max_fs = min(float(max(st.strides_fs)), float(c.max_substep_fs))
        self.register_buffer("coefficient_scale", torch.ones(n, dtype=torch.float64))
        self.stride_coefficients = nn.Parameter(
            torch.zeros(c.stride_orders + 1, n, dtype=torch.float64)
        )

    @property
    def dtype(self) -> torch.dtype:
        """float64 whatever the parameters were cast to: the potential, the steps and the
        outputs are float64 (the model is tiny), so callers build float64 batches and a
        stride that starts where the last ended is recognised exactly (force reuse)."""
        return torch.float64

    def receptive_field_A(self, dt_fs: float) -> float:
        """2 × cutoff per force evaluation of a stride (an embedded-atom energy reads the
        densities of the neighbours, each a cutoff further), a step's move aside."""
        n = int(self.substeps(torch.tensor([float(dt_fs)], dtype=torch.float64))[0])
        return 2.0 * (n + 1) * float(self.cutoff)

    def compiled(self, **kwargs) -> SymplecticModel:
        """Not compiled: float64 forces from cubic tables, Verlet list carried across
        strides; returns the model unchanged."""
        return self

    # ------------------------------------------------------------------ the potential
    def substeps(self, dt_fs: torch.Tensor) -> torch.Tensor:
        """(B,) int: kick–drift–kick steps of strides ``dt_fs`` (B,) fs."""
        n = torch.ceil(dt_fs / float(self.hparams.max_substep_fs) - 1e-9)
        return n.clamp_min(1).long()

    def coefficients(self, h_fs: torch.Tensor) -> torch.Tensor:
        """(B, C) float64: the potential's coefficients at steps ``h_fs`` (B,) fs."""
        x2 = (h_fs.to(torch.float64) / self.h_max_fs) ** 2
        powers = x2.unsqueeze(-1) ** torch.arange(
            self.stride_coefficients.shape[0], dtype=torch.float64, device=x2.device
        )
        delta = powers @ self.stride_coefficients.to(torch.float64)
        base = self.potential.coefficients.to(torch.float64)
        return base + self.coefficient_scale.to(torch.float64) * delta

    def energy(self, pos, cell, species, graph, h_fs) -> torch.Tensor:
        """U_h per system, (B,) float64 eV: positions (N, 3) Å, cells (B, 3, 3) Å,
        atomic numbers (N,), system of every atom (N,), steps h (B,) fs."""
        feats = self.potential.features(pos, cell, species, graph, cell.shape[0])
        core = self.potential.core_energy(pos, cell, graph, cell.shape[0])
        return (feats * self.coefficients(h_fs)).sum(-1) + core

    def forces(self, pos, cell, species, graph, h_fs, create_graph: bool) -> torch.Tensor:
        """(N, 3) float64 eV/Å, −∇U_h; ``create_graph`` keeps the graph for training."""
        if not pos.requires_grad:
            pos = pos.requires_grad_(True)
        energy = self.energy(pos, cell, species, graph, h_fs).sum()
        (grad,) = torch.autograd.grad(energy, pos, create_graph=create_graph)
        return -grad

    def initialise_from_data(self, root, frames_per_temperature: int = 20, log=None) -> dict:
        """Fit c_fit to the energies and forces of the dataset at ``root`` (its training
        temperatures; :func:`~equignnmd.potential.fit.fit_energy_head`), set the scales s and
        zero δ, and attach the fit as the model's energy head (``--energy model``). Returns
        the fit's report (scores per temperature)."""
        c = self.hparams
        settings = {"frames_per_temperature": frames_per_temperature, **c.potential_fields()}
        settings["stress_weight"] = c.stress_weight
        head, report = fit_energy_head(self, root, settings, log=log)
        if head.config != self.potential.config:
            raise ValueError(
                f"dataset {root}: the fitted potential {head.config} is not this model's "
                f"{self.potential.config}; expected the species the model was built for"
            )
        self.potential.load_state_dict(head.state_dict())  # casts to the model's dtype
        # the fit is also the checkpoint's own energy (``--energy model``): the reference's
        # energy to ~0.1 meV/atom, so rescaling against it holds the true total energy
        self.attach_energy_head(head, report)
        # s_k: a unit δ_k moves the forces by ~ RMS force / √C (columns of the force design
        # over a few frames), so Adam's steps are of one size across very different columns
        temps = report["fit_temperatures_K"]
        fit_part = (0.0, 1.0 - EnergyFitConfig().val_fraction)
        frames = load_energy_frames(root, temps, 1, fit_part)
        _, ffeats, *_rest, forces, _ = design_matrix(head, frames)
        col_rms = ffeats.pow(2).mean(dim=(0, 1)).sqrt()
        f_rms = forces.pow(2).mean().sqrt()
        n = head.n_features
        scale = torch.where(col_rms > 0, f_rms / (col_rms.clamp_min(1e-300) * math.sqrt(n)), 0.0)
        with torch.no_grad():
            self.coefficient_scale.copy_(scale)
            self.stride_coefficients.zero_()
        return report

    # ------------------------------------------------------------------ the stride
    def forward(self, batch) -> Prediction:
        train = self.training and torch.is_grad_enabled()
        f64 = torch.float64
        # a rollout calls this under inference mode; the forces need autograd, so step out
        # of it and work on ordinary copies of the inputs
        with torch.inference_mode(False), torch.enable_grad():
            pos = batch.pos.to(f64).clone()
            vel = batch.vel.to(f64).clone()
            cell = batch.cell.to(f64).clone().reshape(-1, 3, 3)
            mass = batch.mass.to(f64).clone().unsqueeze(-1)
            species = batch.species.clone()
            graph = getattr(batch, "batch", None)
            graph = torch.zeros_like(species) if graph is None else graph.clone()
            dt_fs = torch.as_tensor(batch.dt_fs).to(f64).clone().reshape(-1)
            dt_fs = dt_fs.expand(cell.shape[0]) if dt_fs.numel() == 1 else dt_fs
            n_steps = self.substeps(dt_fs)  # (B,)
            h_fs = dt_fs / n_steps
            h_ps = fs_to_ps(h_fs)[graph].unsqueeze(-1)
            kick = 0.5 * h_ps * FTM2V / mass  # Å/ps per eV/Å

            key = (cell, species, graph, dt_fs)
            if train:  # autograd forces, the graph kept for the parameters' gradients

                def force(r):
                    return self.forces(r, cell, species, graph, h_fs, create_graph=True)

                start, f, verlet = pos, None, None
            else:  # closed-form forces over a Verlet list carried from stride to stride
                start, f, verlet = self._continuation(pos, key)
                if verlet is None:
                    verlet = VerletList(self.cutoff, self.NEIGHBOUR_SKIN_A)
                    verlet.build(start, cell, graph)
                coefficients = self.coefficients(h_fs).detach()
                table = self._table(coefficients)

                def force(r):
                    edge_index, vectors, _ = verlet.edges(r)
                    return self.potential.energy_and_forces(
                        r, species, graph, coefficients, edge_index, vectors, table
                    )[1]

            r, v = start, vel
            f = force(r) if f is None else f
            # a few steps, not atoms; a graph whose stride needs fewer steps than the batch's
            # longest stays where it is (a force evaluation wasted on it, not a wrong step)
            for k in range(int(n_steps.max())):
                moving = (k < n_steps)[graph].unsqueeze(-1)
                v_half = v + kick * f
                r = torch.where(moving, r + h_ps * v_half, r)
                f = force(r)
                v = torch.where(moving, v_half + kick * f, v)
            disp, vel_new = r - start, v
            if not train:
                disp, vel_new = disp.detach(), vel_new.detach()
            self._keep(None if train else (r.detach(), f.detach(), verlet, key))
        return Prediction(disp, vel_new)

    # ------------------------------------------------------------------ reuse across strides
    def _table(self, coefficients: torch.Tensor):
        """The :class:`~.energy_head.RadialTable` of ``coefficients`` (R, C), or None for the
        closed form (``table_spacing_A`` 0). Kept outside the module tree with the
        coefficients it was built from, and rebuilt (milliseconds) when they change: a
        rollout at one stride builds it once."""
        spacing = float(self.hparams.table_spacing_A)
        if spacing <= 0.0:
            return None
        kept = self.__dict__.get("_kept_table")
        if kept is not None:
            old, table = kept
            same = old.shape == coefficients.shape and old.device == coefficients.device
            if same and torch.equal(old, coefficients):
                return table
        table = self.potential.tabulate(coefficients, spacing)
        self.__dict__["_kept_table"] = (coefficients.clone(), table)
        return table

    NEIGHBOUR_SKIN_A = 1.0
    """Skin of the Verlet list the forward keeps (rebuilt when an atom has moved half of it):
    exact, the pairs within the cutoff are those of a fresh list."""
    REUSE_TOLERANCE_A = 1.0e-8
    """A stride starting where the last one ended (to this distance, Å, modulo the cell)
    reuses that stride's final forces and its Verlet list: a rollout then costs one force
    evaluation per kick–drift–kick step, as velocity Verlet does. The caller's position
    arithmetic (r + (r′ − r), wrapping) moves the end point by rounding (~1e-15 Å), far below
    the tolerance."""

    def _parameters_version(self) -> tuple:
        tensors = (self.stride_coefficients, self.coefficient_scale, *self.potential.buffers())
        return tuple((t.data_ptr(), t._version) for t in tensors)

    def _keep(self, item) -> None:
        """Keep (end positions, end forces, Verlet list, key) of the last stride, or forget.
        Kept outside the module tree (not a buffer, not in ``state_dict``); invalidated by any
        change of the parameters (their version counters), the cell, the atoms or the
        stride."""
        self.__dict__["_last"] = None if item is None else (*item, self._parameters_version())

    def _continuation(self, pos: torch.Tensor, key: tuple):
        """``(start, forces, verlet)`` for a stride from ``pos``: if it starts where the last
        one ended (modulo whole cells), ``pos`` moved by those cells onto the last end (the
        Verlet list's continuous frame), with the last forces and list; else ``(pos, None,
        None)``."""
        last = self.__dict__.get("_last")
        if last is None:
            return pos, None, None
        end, force, verlet, old_key, version = last
        if end.shape != pos.shape or version != self._parameters_version():
            return pos, None, None
        if any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(old_key, key)):
            return pos, None, None
        cell, _, graph, _ = key
        per_atom = cell[graph]
        gap = pos - end
        frac = torch.linalg.solve(per_atom.transpose(1, 2), gap.unsqueeze(-1)).squeeze(-1)
        whole = torch.einsum("nk,nkl->nl", torch.round(frac), per_atom)
        if float((gap - whole).abs().max()) >= self.REUSE_TOLERANCE_A:
            return pos, None, None
        return pos - whole, force, verlet

"""The ``paper`` architecture: message passing + edge-conditioned graph attention, 6 blocks.

A faithful re-implementation of Immanuel, Mahata & Maiti, "Toward Generalizable Surrogate Models
for Molecular Dynamics via Graph Neural Networks" (arXiv 2512.21822), following
``docs/paper-architecture.md``. Widths (defaults of :class:`PaperConfig`):

* static node embedding (192) = [species embedding 64 ‖ rbf(Δt) 32 ‖ rbf(T) 32 ‖ struct 64],
  struct = GELU(Linear(5→64)) of the five descriptors [CSP, CNA, Q4, Q6, CN];
* node input x_i (198) = [wrapped position 3 ‖ velocity 3 ‖ static 192];
* edge features e_ij (96) = [rbf(|r_ij|) 32 on [0, R_cut] ‖ MLP_vel(v_j − v_i) 64];
* 6 blocks, hidden 128, 8 heads × 16, FFN 512, cutoff ``PAPER_CUTOFF_A`` = 6.287 Å.

One block b (its own weights; blocks share no parameters):

1. ``p_i = Linear_in(x_i)`` (198→128), x_i rebuilt from the block's current positions;
2. message passing: ``m_ij = MLP_m([p_i, p_j, e_ij])``, ``a_i = mean_j m_ij``,
   ``h_i = MLP_u([p_i, a_i])`` (all two layers with GELU);
3. attention: ``q_i = W_q h_i``, ``k_ij = W_k^h h_j + W_k^e e_ij``,
   ``v_ij = W_v^h h_j + W_v^e e_ij``; ``α_ij = softmax_j(q_i·k_ij/√16)`` per head;
   ``m_i = Σ_j α_ij v_ij`` (heads concatenated);
4. ``h'_i = LayerNorm(p_i + m_i)``; ``h^attn_i = LayerNorm(h'_i + FFN(h'_i))``;
5. ``Δr_i^(b) = s · W_out h^attn_i``; ``r_i ← r_i + Δr_i^(b)``; the next block rebuilds its
   edges, distances, edge features and node input from the updated positions.

Output: displacement ``Σ_b Δr^(b)`` and (if ``velocity_head``) the velocity at t + Δt.

Decisions where the text is silent (all recorded here; the spec's "Open points" are followed):

* **x_i versus the hidden width.** The text names one ``Linear(x_i)`` (the residual of step 4)
  and feeds "h_i" to message passing without saying where it comes from. We read the block's
  first layer ``Linear_in`` (198→128) as that projection and use it twice: as the state entering
  message passing and as the residual added to the attention output. With the default
  ``carry_hidden: False`` (the literal reading: "the updated positions are used to construct the
  node feature input for the next block"), blocks communicate only through the positions;
  ``carry_hidden: True`` adds the previous block's ``h^attn`` to ``p_i`` (not in the paper).
* **MLP_m's second layer is applied after the mean** (``mean_j W2 σ(z_ij) + b2 =
  W2 mean_j σ(z_ij) + b2``): exactly the same function, 128×128×E fewer multiply-adds. The first
  layer of MLP_m is split into node parts and an edge part (also exact), and the three edge
  projections of a block (MLP_m's edge columns, W_k^e, W_v^e) are stored as one
  ``Linear(96→384)`` and applied with ``addmm`` onto the gathered node terms.
  Parameter count is that of the textbook layers: ``Linear(352→128)`` for MLP_m's first layer,
  one bias each for q, k and v.
* **Normalisation** (statistics from the training split, carried in the checkpoint): velocities
  enter as ``v / stats.vel_rms`` (node input and MLP_vel); descriptors as
  ``(f − desc_mean) / desc_std``; wrapped positions as ``r_wrapped / position_scale``
  (default 10 Å; the paper feeds raw Å — a pure rescaling of the first Linear's input).
* **Output scales.** Each block's displacement is ``s · W_out h`` with the ballistic scale
  ``s = stats.vel_rms · Δt`` (Å; Δt in ps), so the network predicts O(1) numbers at every
  stride. The velocity head (not in the paper; spec "Open points") is ``v(t+Δt) = v(t) +
  s_v(Δt) · W_vel h^attn`` on the last block, with ``s_v`` the RMS velocity change
  ``stats.dvel_rms`` interpolated piecewise-linearly in Δt through (0, 0) and the training
  strides, constant beyond the largest. ``velocity_head: False`` gives ``velocity=None``.
* **Δt and T** are RBF-expanded with centres evenly spaced over ``stats.dt_range_fs`` and
  ``stats.temperature_range_K``; γ = 1/Δ² as in the paper (:class:`GaussianRBF`).
* **Species**: ``species`` lists the atomic numbers of the embedding table, one learned
  ``species_dim`` row each; left out (None, the default), they are the training data's
  (``stats.species``), and the built model's ``config`` names them, so a checkpoint rebuilds
  the same table. A list that lacks a species of the data is refused when the model is built.
* **Absolute positions** (``absolute_positions: True``, faithful) are re-wrapped into the cell at
  every block. With ``False`` the 3 position features are dropped and the node input is 195
  wide; the model is then translation-invariant (up to rounding). Neither variant is
  rotation-equivariant (raw velocity components in, Cartesian displacement out);
  :func:`equignnmd.symmetry.symmetry_report` measures both errors.
* **Cheap exact graph rebuild** (:class:`equignnmd.graph.VerletList`). One neighbour list per
  forward at ``cutoff + skin``; each block recomputes the edge vectors from its current
  (unwrapped) positions with the stored cell shifts (differentiable) and keeps the edges with
  ``|r_ij| < cutoff``. This equals a full rebuild as long as every atom moved at most
  ``skin/2`` since the list was built (a pair now closer than ``cutoff`` was then closer than
  ``cutoff + skin``); when the largest accumulated displacement exceeds ``skin/2`` the list is
  rebuilt from the current positions. MLP_vel is evaluated once per list (velocities do not
  change between blocks) and gathered per block. A batch may carry a precomputed list
  (``add_edges(data, model.cutoff + model.skin)``); it is used when its ``cutoff`` attribute
  is at least ``cutoff + skin``.
* Hard cutoff as in the paper: the Gaussian distance RBF does not vanish at R_cut, so the model
  is discontinuous when a pair crosses the cutoff (as is the mean over a changing neighbour set).
* Table 3's "temporal lookback 10 fs" is unused by the text and not implemented.
* Observation, not a change: the edge features carry no direction (only |r_ij| and v_j − v_i),
  so with ``absolute_positions: False`` the only vectors the model sees are velocities; the
  direction of a force (e.g. an atom displaced by +x or −x in inversion-symmetric FCC has the
  same neighbour distances) then cannot in general be represented.
  With absolute positions the direction to a neighbour is available only as a difference of
  wrapped coordinates, which is wrong by a box vector for periodic images.
* Performance: edges are sorted by centre atom once per list; per block, the memory-bound edge
  work is about 16 passes over (E, 128) tensors (E ≈ 63 N at the paper's cutoff), so training
  memory is about 1.2 MB per atom in float32 (6 blocks, activations kept for backward).

Ablation switches (issue 15; each off by default, i.e. faithful, and each a deviation from
the paper when on):

* ``ballistic_skip``: ``d = v Δt + Σ_b s_c Δ^(b)`` with ``s_c = ½ s_v(Δt) Δt``, the RMS of the
  non-ballistic part of a displacement (as in the ``equivariant`` model); the blocks see
  ``r + Σ`` corrections so far. The faithful model must rebuild ``v Δt`` from the velocity
  components through LayerNorm'd hidden states, to a small fraction of a per-cent at every
  stride, which is where it loses to r + vΔt at 1 fs (the ablation table of
  docs/studies/2026-12-06-issue-15-paper-reproduction.md).
* ``edge_direction_scalars``: ``[r̂_ij·v_i, r̂_ij·v_j, |v_j − v_i|]`` (velocities ÷
  ``vel_rms``) appended to ``e_ij`` (96 → 99 wide), recomputed per block.
* ``vector_readout``: each block adds ``mean_j w_ij r̂_ij`` (:class:`VectorReadout`) to its
  Cartesian ``W_out h``, the only way the network can point a displacement along a bond.

Diagnostics: ``model.neighbour_list_calls`` counts neighbour lists computed; setting
``model.debug_edges = []`` records (src, dst, r_ij, positions) of every block of the next
forwards (used by the tests to compare with a full rebuild).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch_geometric.utils import scatter, softmax

from ..config import ConfigError
from ..data.stats import TrainingStats
from ..graph import VerletList
from ..units import fs_to_ps
from .base import Prediction, SurrogateModel
from .layers import GaussianRBF, mlp, stride_scale

__all__ = [
    "PaperBlock",
    "PaperConfig",
    "PaperModel",
    "VectorReadout",
    "count_parameters_by_hand",
    "embedding_species",
]

PAPER_CUTOFF_A = 6.287
"""The paper's graph cutoff, Å (its configuration's default)."""


@dataclass
class PaperConfig:
    """Hyperparameters of the ``paper`` architecture (widths of the paper's Tables 2-3)."""

    species: list[int] | None = None
    """Atomic numbers of the embedding table; None: the training data's (``stats.species``)."""
    species_dim: int = 64
    n_rbf_distance: int = 32
    """Gaussians of |r_ij| on [0, cutoff]."""
    n_rbf_dt: int = 32
    """Gaussians over the training stride range (stats.dt_range_fs)."""
    n_rbf_temperature: int = 32
    """Gaussians over stats.temperature_range_K."""
    temperature_conditioning: bool = False
    """False: the temperature label is not read (a learned constant)."""
    n_descriptors: int = 5
    """CSP, CNA, Q4, Q6, CN."""
    struct_dim: int = 64
    vel_edge_dim: int = 64
    hidden: int = 128
    heads: int = 8
    head_dim: int = 16
    ffn: int = 512
    blocks: int = 6
    cutoff: float = PAPER_CUTOFF_A
    """Graph cutoff, Å."""
    skin: float = 1.0
    """Verlet-list skin, Å (one list per forward at cutoff + skin, filtered per block)."""
    velocity_head: bool = True
    """Not in the paper; False reproduces the paper (positions only)."""
    absolute_positions: bool = True
    """The paper's wrapped-position features; False: translation-invariant."""
    position_scale: float = 10.0
    """Å; wrapped positions enter divided by this."""
    carry_hidden: bool = False
    """True: each block also receives the previous block's h_attn (not in the paper)."""
    ballistic_skip: bool = False
    """Not in the paper: ``d = v Δt + Σ_b`` corrections of scale ``½ s_v(Δt) Δt`` (the
    non-ballistic part); False (faithful): the blocks predict the whole displacement."""
    edge_direction_scalars: bool = False
    """Not in the paper: three more edge features, ``r̂_ij·v_i``, ``r̂_ij·v_j`` and
    ``|v_j − v_i|`` (velocities ÷ ``stats.vel_rms``), recomputed per block."""
    vector_readout: bool = False
    """Not in the paper: each block's displacement also gets ``mean_j w_ij r̂_ij`` with a scalar
    ``w_ij`` from ``[h_i, h_j, e_ij]`` (EGNN-style), so a force's direction is representable."""

    def check_consistency(self, source: str) -> None:
        """Constraints between fields (checked when a model is built, not by :meth:`validate`)."""
        if self.heads * self.head_dim != self.hidden:
            raise ConfigError(
                f"{source}: fields 'heads' × 'head_dim' = {self.heads} × {self.head_dim}; "
                f"expected them to equal 'hidden' = {self.hidden}"
            )

    def validate(self, source: str) -> None:
        """Every field on its own: ranges (types are checked by :func:`equignnmd.config.build`)."""
        if self.skin < 0:
            raise ConfigError(f"{source}: field 'skin' is {self.skin} Å; expected ≥ 0")
        if self.species is not None and (
            not self.species or len(set(self.species)) != len(self.species)
        ):
            raise ConfigError(
                f"{source}: field 'species' is {self.species}; expected distinct atomic "
                "numbers, or leave it out to take the training data's"
            )
        positive = (
            "species_dim",
            "n_rbf_distance",
            "n_rbf_dt",
            "n_rbf_temperature",
            "n_descriptors",
            "struct_dim",
            "vel_edge_dim",
            "hidden",
            "heads",
            "head_dim",
            "ffn",
            "blocks",
            "cutoff",
            "position_scale",
        )
        for name in positive:
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{source}: field '{name}' is {value}; expected > 0")


class PaperBlock(nn.Module):
    """One message-passing + attention block (see the module docstring, steps 1–5)."""

    def __init__(self, node_in: int, edge_dim: int, hidden: int, heads: int, ffn: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden {hidden} is not divisible by heads {heads}")
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        self.lin_in = nn.Linear(node_in, hidden)
        # MLP_m first layer = [W_i | W_j] on nodes (no bias) + edge columns (with the bias)
        self.mp_node = nn.Linear(hidden, 2 * hidden, bias=False)
        # the three edge projections in one Linear(96→384):
        # [MLP_m edge columns + MLP_m bias | W_k^e + b_k | W_v^e + b_v]
        self.edge_lin = nn.Linear(edge_dim, 3 * hidden)
        self.mp_out = nn.Linear(hidden, hidden)  # MLP_m second layer (applied after the mean)
        self.mlp_u = mlp([2 * hidden, hidden, hidden])
        self.q = nn.Linear(hidden, hidden)
        self.kv_node = nn.Linear(hidden, 2 * hidden, bias=False)  # [W_k^h | W_v^h]
        self.norm1 = nn.LayerNorm(hidden)
        self.ffn = mlp([hidden, ffn, hidden])
        self.norm2 = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, 3)

    def forward(
        self,
        x: torch.Tensor,
        edge_feat: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        h_prev: torch.Tensor | None = None,
    ) -> torch.Tensor:
        n, hid = x.shape[0], self.hidden
        p = self.lin_in(x)
        if h_prev is not None:
            p = p + h_prev
        w_mp, w_k, w_v = self.edge_lin.weight.split(hid, dim=0)
        b_mp, b_k, b_v = self.edge_lin.bias.split(hid, dim=0)
        # message passing with mean aggregation (node terms gathered, edge term fused in addmm)
        pi, pj = self.mp_node(p).split(hid, dim=-1)
        gathered = pi.index_select(0, dst).add_((pj + b_mp).index_select(0, src))
        z = nn.functional.gelu(torch.addmm(gathered, edge_feat, w_mp.t()))
        mean = scatter(z, dst, dim=0, dim_size=n, reduce="mean")
        has_nb = scatter(torch.ones_like(dst, dtype=x.dtype), dst, dim=0, dim_size=n) > 0
        a = nn.functional.linear(mean, self.mp_out.weight) + has_nb.unsqueeze(-1) * self.mp_out.bias
        h = self.mlp_u(torch.cat([p, a], dim=-1))
        # edge-conditioned multi-head attention over neighbours
        kh, vh = self.kv_node(h).split(hid, dim=-1)
        q = self.q(h).index_select(0, dst).view(-1, self.heads, self.head_dim)
        k = torch.addmm((kh + b_k).index_select(0, src), edge_feat, w_k.t())
        v = torch.addmm((vh + b_v).index_select(0, src), edge_feat, w_v.t())
        k = k.view(-1, self.heads, self.head_dim)
        v = v.view(-1, self.heads, self.head_dim)
        score = (q * k).sum(-1) / math.sqrt(self.head_dim)
        alpha = softmax(score, index=dst, num_nodes=n, dim=0)
        m = scatter(alpha.unsqueeze(-1) * v, dst, dim=0, dim_size=n, reduce="sum").view(n, hid)
        h1 = self.norm1(p + m)
        return self.norm2(h1 + self.ffn(h1))


VECTOR_READOUT_WIDTH = 32
"""Hidden width of the per-edge weight MLP of ``vector_readout``."""


class VectorReadout(nn.Module):
    """``Δ_i = mean_j w_ij r̂_ij``, ``w_ij = Linear(GELU(A h_i + B h_j + C e_ij))`` (scalar):
    a displacement along the bonds, equivariant given invariant ``h`` and ``e`` (the
    ``vector_readout`` switch; not in the paper)."""

    def __init__(self, hidden: int, edge_dim: int, width: int = VECTOR_READOUT_WIDTH):
        super().__init__()
        self.width = width
        self.node = nn.Linear(hidden, 2 * width, bias=False)
        self.edge = nn.Linear(edge_dim, width)
        self.out = nn.Linear(width, 1)

    def forward(self, h, edge_feat, unit, src, dst) -> torch.Tensor:
        """``h`` (N, H), ``edge_feat`` (E, F), ``unit`` r̂_ij (E, 3) → (N, 3), dimensionless."""
        hi, hj = self.node(h).split(self.width, dim=-1)
        z = hi.index_select(0, dst) + hj.index_select(0, src) + self.edge(edge_feat)
        w = self.out(nn.functional.gelu(z))
        return scatter(w * unit, dst, dim=0, dim_size=h.shape[0], reduce="mean")


def embedding_species(configured: list[int] | None, stats: TrainingStats) -> list[int]:
    """The atomic numbers of the species embedding's rows: ``configured`` (config field
    ``species``) when given, else the training data's ``stats.species``. A configured list
    must hold every species of the data: a ``ConfigError`` names the missing ones."""
    data = [int(z) for z in stats.species]
    if configured is None:
        return data
    species = [int(z) for z in configured]
    missing = sorted(set(data) - set(species))
    if missing:
        raise ConfigError(
            f"paper model config: field 'species' = {species} lacks atomic numbers {missing} "
            f"of the training data (stats 'species' = {data}); expected every species of the "
            "data, or leave 'species' out to take the data's"
        )
    return species


class PaperModel(SurrogateModel):
    """The paper's GNN surrogate with an optional velocity head (module docstring: details)."""

    arch = "paper"
    config_class = PaperConfig
    needs_descriptors = True

    def __init__(self, config: PaperConfig | dict, stats: TrainingStats | None = None):
        super().__init__(config, stats)
        c, s = self.config, self.stats
        self.skin = float(c["skin"])
        self.predicts_velocity = bool(c["velocity_head"])
        self.absolute_positions = bool(c["absolute_positions"])
        self.carry_hidden = bool(c["carry_hidden"])
        self.ballistic_skip = bool(c["ballistic_skip"])
        self.direction_scalars = bool(c["edge_direction_scalars"])
        self.position_scale = float(c["position_scale"])
        self.vel_rms = float(s.vel_rms)

        species = embedding_species(c["species"], s)
        # the checkpoint's config names the table's rows, whatever the data of a later build
        self.config["species"] = species
        if self.hparams is not None:
            self.hparams = replace(self.hparams, species=species)
        table = torch.full((max(species) + 1,), -1, dtype=torch.long)
        table[torch.tensor(species)] = torch.arange(len(species))
        self.register_buffer("species_index", table, persistent=False)
        self.embedding = nn.Embedding(len(species), c["species_dim"])
        self.rbf_dt = GaussianRBF(*s.dt_range_fs, c["n_rbf_dt"])
        self.rbf_temperature = GaussianRBF(*s.temperature_range_K, c["n_rbf_temperature"])
        self.rbf_distance = GaussianRBF(0.0, self.cutoff, c["n_rbf_distance"])
        self.struct = mlp([c["n_descriptors"], c["struct_dim"]], last_act=True)
        std = [x if x > 0 else 1.0 for x in s.desc_std]
        self.register_buffer("desc_mean", torch.tensor(s.desc_mean, dtype=torch.float32))
        self.register_buffer("desc_std", torch.tensor(std, dtype=torch.float32))
        self.mlp_vel = mlp([3, c["vel_edge_dim"], c["vel_edge_dim"]])

        self.static_dim = c["species_dim"] + c["n_rbf_dt"] + c["n_rbf_temperature"]
        self.static_dim += c["struct_dim"]
        self.node_input_dim = self.static_dim + 3 + (3 if self.absolute_positions else 0)
        self.edge_dim = c["n_rbf_distance"] + c["vel_edge_dim"]
        self.edge_dim += 3 if self.direction_scalars else 0
        self.blocks = nn.ModuleList(
            PaperBlock(self.node_input_dim, self.edge_dim, c["hidden"], c["heads"], c["ffn"])
            for _ in range(int(c["blocks"]))
        )
        self.vector_readouts = None
        if c["vector_readout"]:
            self.vector_readouts = nn.ModuleList(
                VectorReadout(c["hidden"], self.edge_dim) for _ in range(int(c["blocks"]))
            )
        self.velocity_out = nn.Linear(c["hidden"], 3) if self.predicts_velocity else None

        # velocity-change scale: piecewise linear through (0, 0) and (stride, dvel_rms)
        strides = np.asarray(s.strides_fs, float)
        dvel = np.asarray(s.dvel_rms, float)
        order = np.argsort(strides)
        xs = np.concatenate([[0.0], strides[order]])
        ys = np.concatenate([[0.0], dvel[order]])
        keep = np.concatenate([[True], np.diff(xs) > 0])
        self.register_buffer("dvel_x", torch.tensor(xs[keep], dtype=torch.float32))
        self.register_buffer("dvel_y", torch.tensor(ys[keep], dtype=torch.float32))
        self.neighbour_list_calls = 0  # diagnostics: neighbour lists computed so far
        self.debug_edges: list | None = None

    # ------------------------------------------------------------------ helpers
    def dvel_scale(self, dt_fs: torch.Tensor) -> torch.Tensor:
        """RMS velocity change for strides ``dt_fs`` (B,), Å/ps
        (:func:`~equignnmd.models.layers.stride_scale`)."""
        if self.dvel_x.numel() < 2:
            return torch.full_like(dt_fs, float(self.vel_rms))
        return stride_scale(dt_fs, self.dvel_x, self.dvel_y)

    def static_features(self, batch, graph: torch.Tensor) -> torch.Tensor:
        """[species ‖ rbf(Δt) ‖ rbf(T) ‖ struct], (N, 192)."""
        idx = self.species_index[batch.species.clamp(0, self.species_index.numel() - 1)]
        if bool(((idx < 0) | (batch.species >= self.species_index.numel())).any()):
            found = sorted(set(batch.species.unique().tolist()))
            raise ValueError(
                f"paper: field 'species' has atomic numbers {found}; this model knows "
                f"{self.config['species']}"
            )
        desc = getattr(batch, "descriptors", None)
        if desc is None:
            raise ValueError(
                "paper: field 'descriptors' (N, 5) is missing; call model.prepare(batch) or "
                "pass descriptors to make_data"
            )
        dtype = batch.pos.dtype
        desc = (desc.to(dtype) - self.desc_mean.to(dtype)) / self.desc_std.to(dtype)
        return torch.cat(
            [
                self.embedding(idx),
                self.rbf_dt(batch.dt_fs.to(dtype))[graph],
                self.rbf_temperature(self.temperature_input(batch.temperature_K.to(dtype)))[graph],
                self.struct(desc),
            ],
            dim=-1,
        )

    def _given_edges(self, batch):
        ei = getattr(batch, "edge_index", None)
        cut = getattr(batch, "cutoff", None)
        if ei is None or cut is None or getattr(batch, "shifts", None) is None:
            return None, None
        cut = float(torch.as_tensor(cut, dtype=torch.float64).min())  # float, list or tensor
        if cut + 1e-9 < self.cutoff + self.skin:
            return None, None
        return ei, batch.shifts

    # ------------------------------------------------------------------ forward
    def compiled(self, **kwargs) -> PaperModel:
        """torch.compile(dynamic=True) of each block; neighbour list and descriptors eager
        (a whole-model compile breaks at the neighbour list and recompiles every step). In
        place; returns the model."""
        kwargs.setdefault("dynamic", True)
        for block in self.blocks:
            block.compile(**kwargs)
        return self

    def interaction_layers(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, batch) -> Prediction:
        pos0, vel = batch.pos, batch.vel
        n = pos0.shape[0]
        graph = getattr(batch, "batch", None)
        if graph is None:
            graph = torch.zeros(n, dtype=torch.long, device=pos0.device)
        cell = batch.cell.to(pos0.dtype).reshape(-1, 3, 3)
        dt_fs = batch.dt_fs.to(pos0.dtype)

        vel_n = vel / self.vel_rms
        fixed = torch.cat([vel_n, self.static_features(batch, graph)], dim=-1)
        dt_ps = fs_to_ps(dt_fs)
        if self.ballistic_skip:
            # the blocks predict d − vΔt, whose RMS is about ½ Δv Δt at short strides
            disp_scale = (0.5 * self.dvel_scale(dt_fs) * dt_ps)[graph].unsqueeze(-1)
        else:
            disp_scale = (self.vel_rms * dt_ps)[graph].unsqueeze(-1)
        inv_cell = torch.linalg.inv(cell) if self.absolute_positions else None

        nl = VerletList(self.cutoff, self.skin).build(pos0, cell, graph, *self._given_edges(batch))
        vel_feat, feat_version = None, None
        disp = torch.zeros_like(pos0)
        h = None
        for b, block in enumerate(self.blocks):
            pos = pos0 + disp
            (src, dst), vec, keep = nl.edges(pos)
            if nl.version != feat_version:
                # MLP_vel(v_j − v_i): velocities do not change between blocks, once per list
                vel_feat = self.mlp_vel(vel_n[nl.src] - vel_n[nl.dst])
                feat_version = nl.version
            if self.debug_edges is not None:
                self.debug_edges.append((src, dst, vec.detach(), pos.detach()))
            dist = vec.norm(dim=-1)
            parts = [self.rbf_distance(dist), vel_feat[keep]]
            unit = None  # r̂_ij, only for the switches that read directions (not the paper)
            if self.direction_scalars or self.vector_readouts is not None:
                unit = vec / dist.clamp_min(1e-9).unsqueeze(-1)
            if self.direction_scalars:
                vi, vj = vel_n.index_select(0, dst), vel_n.index_select(0, src)
                parts.append(
                    torch.stack(
                        [(unit * vi).sum(-1), (unit * vj).sum(-1), (vj - vi).norm(dim=-1)], dim=-1
                    )
                )
            edge_feat = torch.cat(parts, dim=-1)
            if self.absolute_positions:
                frac = torch.einsum("nk,nkl->nl", pos, inv_cell[graph])
                frac = frac - torch.floor(frac).detach()
                wrapped = torch.einsum("nk,nkl->nl", frac, cell[graph])
                x = torch.cat([wrapped / self.position_scale, fixed], dim=-1)
            else:
                x = fixed
            h = block(x, edge_feat, src, dst, h if self.carry_hidden else None)
            step = block.out(h)
            if self.vector_readouts is not None:
                step = step + self.vector_readouts[b](h, edge_feat, unit, src, dst)
            disp = disp + disp_scale * step
        velocity = None
        if self.velocity_out is not None:
            s_v = self.dvel_scale(dt_fs)[graph].unsqueeze(-1)
            velocity = vel + s_v * self.velocity_out(h)
        self.neighbour_list_calls += nl.builds
        if self.ballistic_skip:
            # the blocks saw r + corrections; the ballistic drift is added once, here
            disp = disp + vel * dt_ps[graph].unsqueeze(-1)
        return Prediction(disp, velocity)


def count_parameters_by_hand(config: dict[str, Any]) -> int:
    """Parameter count from the spec's layer widths (independent of the module code)."""
    c = {**PaperModel.default_config(), **config}
    H, F, E = c["hidden"], c["ffn"], c["n_rbf_distance"] + c["vel_edge_dim"]
    E += 3 if c["edge_direction_scalars"] else 0
    node_in = c["species_dim"] + c["n_rbf_dt"] + c["n_rbf_temperature"] + c["struct_dim"] + 3
    node_in += 3 if c["absolute_positions"] else 0

    def linear(i, o, bias=True):
        return i * o + (o if bias else 0)

    # embedding table (None: one row per species of the default statistics)
    total = len(embedding_species(c["species"], TrainingStats())) * c["species_dim"]
    total += linear(c["n_descriptors"], c["struct_dim"])  # shared struct layer
    total += linear(3, c["vel_edge_dim"]) + linear(c["vel_edge_dim"], c["vel_edge_dim"])  # MLP_vel
    block = linear(node_in, H)  # Linear(x_i)
    block += linear(2 * H + E, H) + linear(H, H)  # MLP_m
    block += linear(2 * H, H) + linear(H, H)  # MLP_u
    block += linear(H, H)  # W_q
    block += 2 * (linear(H, H, bias=False) + linear(E, H))  # W_k^h, W_k^e (+b); W_v^h, W_v^e (+b)
    block += 2 * 2 * H  # two LayerNorms
    block += linear(H, F) + linear(F, H)  # FFN
    block += linear(H, 3)  # W_out
    w = VECTOR_READOUT_WIDTH
    if c["vector_readout"]:
        block += linear(H, 2 * w, bias=False) + linear(E, w) + linear(w, 1)
    total += c["blocks"] * block
    total += linear(H, 3) if c["velocity_head"] else 0
    return total

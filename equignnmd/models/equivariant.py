"""E(3)-equivariant message-passing surrogate (TrajCast-style), arch ``"equivariant"``.

One model maps the state (positions, velocities, cell, species) of a periodic system to every
atom's displacement over a stride Δt and its velocity at t + Δt, for any stride in the
training range: Δt and the temperature enter as scalar conditioning.

Architecture (all irreps are O(3) irreps with "natural" parity by default: ``0e + 1o + 2e +
…``; reflections are symmetries of the model, not only rotations):

* **Edges** ``r_ij = pos[j] - pos[i] + shift @ cell`` within ``cutoff``: spherical harmonics
  ``Y^l(r̂_ij)`` for l ≤ ``lmax`` (component normalisation), a Bessel basis of ``|r_ij|`` and a
  smooth polynomial envelope (order ``cutoff_p``) that takes every message to zero, with its
  first and second derivatives, at the cutoff.
* **Nodes**: a scalar conditioning vector ``c_i = [one-hot species, speed RBF, Δt RBF, T RBF]``
  (Gaussian bases of ``|v_i| / vel_rms``, of Δt over ``stats.dt_range_fs`` and of T over
  ``stats.temperature_range_K``) and the velocity direction as spherical harmonics
  ``Y^l(v̂_i)``, l = 1..``lmax``, where ``v̂ = u / sqrt(|u|² + ε²)``, ``u = v / vel_rms``: equal
  to the unit vector for moving atoms, smooth (→ 0) for atoms at rest. An equivariant linear
  layer embeds ``[c_i, Y(v̂_i)]`` into ``channels × (0e + 1o + … )``.
* **Interaction layer** (``layers`` of them):

  1. convolution (:class:`~equignnmd.models._tp_base.EdgeConvolution`): a channel-wise
     ("uvu") tensor product of the neighbour's features with the edge harmonics,
     ``m_ij[u] = a_u(r) Σ_p W_p(r) CG_p(h_j[u], Y(r̂_ij))``, every O(3)-allowed path
     p = (l1, l2 → lo) kept, paths into the same lo summed. The weights
     ``w_{u,p} = a_u(r) W_p(r)`` (per channel × per path, a factorised form of
     NequIP/TrajCast's per-edge weights; ``W_p`` carries the cutoff envelope) come from a
     linear head on a radial MLP of the Bessel basis; the MLP trunk is shared by the layers.
     The factorisation makes each edge a single (D_out × D) @ (D × channels) matrix product
     and runs several times faster on CPU than e3nn's per-path kernels;
  2. ``a_i = Σ_j m_ij / n_avg`` with ``n_avg = stats.avg_num_neighbours(cutoff)`` (a constant,
     so the model is local: it does not depend on N);
  3. equivariant linear channel mixing, then a second channel-wise tensor product with the
     atom's own velocity harmonics ``Y(v̂_i)`` whose weights are an MLP of ``c_i`` (speed, Δt,
     T, species): this is how velocities, strides and temperature condition every layer;
  4. equivariant linear → e3nn ``Gate`` (SiLU on even / tanh on odd scalars, sigmoid gates
     on l > 0);
  5. residual species-dependent self-connection ``FullyConnectedTensorProduct(h_i, one-hot)``.

  The last layer outputs ``channels × 1o`` only (every parameter then reaches the readout).
* **Readout**: an equivariant linear map to two ``1o`` vectors per atom, ``o_d`` and ``o_v``.

De-normalisation and conservation (Δt in ps, ``s_v(Δt)`` = ``stats.dvel_rms`` interpolated
linearly over ``stats.strides_fs``, ∝ Δt below the smallest stride, constant above the
largest)::

    Δv_i = s_v(Δt) · o_v,i                  v_i(t+Δt) = v_i + Δv_i − Σ_j m_j Δv_j / M
    r_i  = ½ s_v(Δt) Δt · o_d,i              d_i = v_i Δt + r_i − Σ_j m_j r_j / M

``½ s_v Δt`` is the RMS of the non-ballistic part ``d − vΔt ≈ ½ Δv Δt`` of a displacement for
short strides, so both network outputs are O(1) targets at every stride (``stats.disp_rms``
is the RMS of the *whole* displacement, dominated by ``vΔt``, so it is not used). Subtracting
the per-graph mass-weighted means makes, exactly and by construction,
``Σ m_i v_i(t+Δt) = Σ m_i v_i(t)`` (momentum) and ``Σ m_i d_i = P Δt`` (the centre of mass moves
ballistically; a system at rest keeps its centre of mass). ``m_i`` is each atom's own mass
(``batch.mass``), so with several species the conserved quantity is the momentum Σ m v, not
the sum of velocities Σ v (which changes whenever the masses differ). The means are per-graph
averages of per-atom quantities, so a periodic replica of a system gets exactly the same
outputs. Species enter as a one-hot over ``stats.species`` (the training data's).

Species expansion (:meth:`EquivariantModel.expand_species`, a fine-tune on an alloy from a
one-element checkpoint): a model built for more species takes a trained model's parameters,
each species' one-hot inputs (the rows of ``embed``'s and every ``vel_mlp``'s conditioning
block, the species axis of every self-connection) copied from a chosen species of the trained
model. e3nn divides every path by the square root of its fan-in, which grows with the number of
species, so the copies are rescaled by the ratio of the two models' path weights: a box whose
atoms are all one species then gives the trained model's outputs for its source species.

Everything is vectorised (no Python loop over atoms or edges); the neighbour list is rebuilt
with vesin unless the batch carries ``edge_index``/``shifts`` for this model's cutoff (vesin
handles unwrapped positions, so atoms outside the cell are fine).

Dtypes. The model is built in torch's default dtype and never changes global state. Its
constants (Clebsch-Gordan / Wigner 3j tables, Bessel frequencies, basis centres, the stride
table) are exact float64 values kept outside the reach of dtype casts
(:func:`~equignnmd.models.layers.register_exact`) and cast to the features' dtype at use, so
``.to(torch.float64)``/``.double()`` give equivariance to float64 rounding (~1e-16) however
the model was cast before. The persistent copies of some of them in the ``state_dict`` (e3nn's
``_w3j_*`` buffers, ``freqs``, ``centres``) keep the checkpoint layout; the forward does not
read them.

``compiled()`` (or config ``compile: true``) wraps the tensor part of the forward with
``torch.compile(dynamic=True)``; the neighbour list stays eager. Compiled, the edges are handed
to the core as a node-major table (:func:`~equignnmd.graph.node_major_edges`: every atom the
same number of neighbour slots, padding beyond the cutoff) where it is at most
:data:`MAX_PADDING` times the list, so each neighbour sum is a fused reduction rather than a
per-edge message array scattered back (docs/studies/2026-12-07-issue-36-compiled-step.md).

Backends. ``use_cueq: true`` builds both channel-wise tensor products of every layer (the edge
convolution, with its gather and scatter, and the velocity product ``tp_vel``) with NVIDIA
cuEquivariance kernels (:mod:`equignnmd.models._tp_cueq`) instead of the torch/e3nn ones
(:mod:`equignnmd.models._tp_base`); parameters, buffers and ``state_dict`` are identical either
way, so any checkpoint loads with either. The other layers (linears, gate, self-connection,
spherical harmonics) are e3nn.

Hyperparameters: :class:`EquivariantConfig` (the ``model:`` block of ``configs/equivariant*.yaml``),
checked field by field when the model is built and when a checkpoint is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import nn
from torch_geometric.utils import scatter

from ..config import ConfigError
from ..data.stats import TrainingStats
from ..graph import edge_vectors, neighbour_list, node_major_edges
from ..radial import BesselBasis, PolynomialCutoff, exact, register_exact
from ..units import fs_to_ps
from ._tp_base import ChannelwiseTP, EdgeConvolution, channelwise_tp
from .base import FINE_TUNABLE, Prediction, SurrogateModel
from .irreps import from_ir_mul, hidden_irreps, irreps_blocks, to_ir_mul
from .layers import GaussianRBF, mlp, stride_scale

MAX_PADDING = 1.3
"""The compiled forward sums neighbours over a node-major table
(:func:`~equignnmd.graph.node_major_edges`) when its slots are at most this many times the
edges; beyond (a slab's surface, a liquid's spread of neighbour counts) the padding would cost
more than the scatter it saves, and the flat list is used."""


@dataclass
class EquivariantConfig:
    """Hyperparameters of the ``equivariant`` architecture (lengths in Å)."""

    cutoff: float = 6.0
    """Graph cutoff, Å: three full FCC Al shells (2.86, 4.05, 4.96 Å) inside r/rc ≤ 0.83."""
    channels: int = 64
    """Multiplicity of every irrep of the hidden features."""
    lmax: int = 2
    """Edge / velocity harmonics and hidden features up to this l (≥ 1)."""
    layers: int = 3
    """Interaction layers (≥ 1)."""
    odd_parity: bool = False
    """Also carry 0o, 1e, 2o, … features."""
    num_radial: int = 8
    """Bessel functions of |r_ij|."""
    cutoff_p: int = 6
    """Order of the polynomial cutoff envelope."""
    radial_mlp: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden widths of the radial MLP shared by the layers."""
    vel_mlp: list[int] = field(default_factory=lambda: [64])
    """Hidden widths of the MLP [species, speed, Δt, T] → velocity tensor-product weights."""
    speed_basis: int = 8
    """Gaussians of |v| / vel_rms over [0, speed_max]."""
    speed_max: float = 8.0
    vel_eps: float = 1.0e-3
    """|v| / vel_rms below which the velocity direction fades out."""
    cond_basis: int = 8
    """Gaussians over stats.dt_range_fs and over stats.temperature_range_K."""
    temperature_conditioning: bool = False
    """False: a Hamiltonian map, the temperature label is not read."""
    compile: bool = False
    """torch.compile the tensor part of the forward (dynamic shapes)."""
    use_cueq: bool = False
    """NVIDIA cuEquivariance kernels for the tensor products (raises if not importable)."""

    def validate(self, source: str) -> None:
        positive = {
            "cutoff": self.cutoff,
            "channels": self.channels,
            "lmax": self.lmax,
            "layers": self.layers,
            "num_radial": self.num_radial,
            "cutoff_p": self.cutoff_p,
            "speed_basis": self.speed_basis,
            "speed_max": self.speed_max,
            "vel_eps": self.vel_eps,
            "cond_basis": self.cond_basis,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{source}: field '{name}' is {value}; expected > 0")
        for name in ("radial_mlp", "vel_mlp"):
            widths = getattr(self, name)
            if any(w < 1 for w in widths):
                raise ConfigError(f"{source}: field '{name}' is {widths}; expected widths ≥ 1")


class InteractionLayer(nn.Module):
    """Convolution ⊗ edge harmonics → neighbour sum → velocity conditioning → gate → residual.

    ``use_cueq`` builds the two tensor products with the cuEquivariance backend
    (:mod:`equignnmd.models._tp_cueq`); the ``state_dict`` is the same either way.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        targets: o3.Irreps,
        irreps_edge_sh: o3.Irreps,
        irreps_vel_sh: o3.Irreps,
        num_species: int,
        num_radial_features: int,
        num_cond: int,
        vel_hidden: list[int],
        avg_num_neighbours: float,
        use_cueq: bool = False,
    ):
        super().__init__()
        conv_cls, tp_cls = EdgeConvolution, ChannelwiseTP
        if use_cueq:
            from ._tp_cueq import CueqChannelwiseTP, CueqEdgeConvolution

            conv_cls, tp_cls = CueqEdgeConvolution, CueqChannelwiseTP
        self.irreps_in = o3.Irreps(irreps_in)
        self.inv_avg_num_neighbours = 1.0 / float(avg_num_neighbours)

        self.conv = conv_cls(self.irreps_in, irreps_edge_sh, targets, num_radial_features)
        self.in_blocks = irreps_blocks(self.irreps_in)
        self.conv_blocks = irreps_blocks(self.conv.irreps_out)
        self.mix = o3.Linear(self.conv.irreps_out, self.conv.irreps_out)
        self.tp_vel = channelwise_tp(self.conv.irreps_out, irreps_vel_sh, targets, tp_cls)
        self.vel_mlp = mlp([num_cond, *vel_hidden, self.tp_vel.weight_numel], nn.SiLU)

        targets = o3.Irreps(targets)
        scalars = o3.Irreps([(mul, ir) for mul, ir in targets if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in targets if ir.l > 0])
        acts = [nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = Gate(scalars, acts, gates, [torch.sigmoid] if len(gates) else [], gated)
        self.lin_out = o3.Linear(self.tp_vel.irreps_out, self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out
        self.self_connection = o3.FullyConnectedTensorProduct(
            self.irreps_in, o3.Irreps(f"{num_species}x0e"), self.irreps_out
        )

    def prepare(self, device: torch.device) -> None:
        """Make the backend kernels ready on ``device`` (cuEquivariance executors)."""
        for module in (self.conv, self.tp_vel):
            prepare = getattr(module, "prepare", None)
            if prepare is not None:
                prepare(device)

    def forward(
        self,
        x: torch.Tensor,
        onehot: torch.Tensor,
        src: torch.Tensor,
        dst: torch.Tensor,
        edge_sh: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
        vel_sh: torch.Tensor,
        cond: torch.Tensor,
        slots=None,
    ) -> torch.Tensor:
        """x (N, irreps_in.dim) e3nn layout → (N, irreps_out.dim); ``onehot`` (N, species),
        ``vel_sh`` (N, D_sh), ``cond`` (N, num_cond); edge tensors and ``slots`` as for the
        convolution."""
        pooled = self.conv(to_ir_mul(x, self.in_blocks), src, dst, edge_sh, radial, envelope, slots)
        pooled = from_ir_mul(pooled * self.inv_avg_num_neighbours, self.conv_blocks)
        h = self.tp_vel(self.mix(pooled), vel_sh, self.vel_mlp(cond))
        h = self.gate(self.lin_out(h))
        return h + self.self_connection(x, onehot)


def species_sources(
    learned: list[int], target: list[int], mapping: Mapping[int, int] | None = None
) -> dict[int, int]:
    """For every atomic number of ``target``, the one of ``learned`` whose weights it starts
    from: ``mapping[z]`` where given, else ``z`` itself where learned, else ``learned[0]``.

    Raises ``ValueError`` for a ``mapping`` key outside ``target`` or value outside ``learned``.
    """
    given = {int(k): int(v) for k, v in (mapping or {}).items()}
    stray = sorted(set(given) - {int(z) for z in target})
    unknown = sorted(set(given.values()) - {int(z) for z in learned})
    if stray or unknown:
        raise ValueError(
            f"species map {given}: keys {stray} are not species of the new model "
            f"{list(target)} and values {unknown} are not species of the trained model "
            f"{list(learned)}; expected new species → trained species"
        )
    first = int(learned[0])
    return {int(z): given.get(int(z), int(z) if int(z) in learned else first) for z in target}


@torch.no_grad()
def _copy_paths(
    new: nn.Module,
    old: nn.Module,
    reads_species: Callable[[object], bool],
    axis: int,
    rows: torch.Tensor,
) -> None:
    """``new``'s e3nn weights (an ``o3.Linear`` or tensor product, no biases) ← ``old``'s, path
    by path, taking along ``axis`` of every path that ``reads_species`` (its instruction) the
    entries ``rows`` (k_new,) of ``old``'s path.

    e3nn applies ``path_weight · W`` on a path, ``path_weight`` = 1/√fan-in (o3.Linear: the
    summed input multiplicities into the path's output; a tensor product with "element" path
    normalisation: the summed products of both inputs' multiplicities, and the output irrep's
    dimension), read here from both objects' instructions: each copy is multiplied by
    ``old.path_weight / new.path_weight`` (in float64) so ``path_weight · W`` stays the same."""
    pairs = list(
        zip(old.weight_views(yield_instruction=True), new.weight_views(yield_instruction=True))
    )
    if len(pairs) != len(new.instructions) or len(old.instructions) != len(new.instructions):
        raise ValueError(f"species expansion: {old} and {new} have different paths")
    for (_, ins_old, w_old), (_, ins_new, w_new) in pairs:
        w = w_old.detach().to("cpu", torch.float64)
        if reads_species(ins_new):
            w = w.index_select(axis, rows)
        if w.shape != w_new.shape:
            raise ValueError(
                f"species expansion: path {ins_new} has weights {tuple(w_new.shape)}, the "
                f"trained model's give {tuple(w.shape)}"
            )
        w_new.copy_(w * (ins_old.path_weight / ins_new.path_weight))


def _same_cutoff(value, cutoff: float) -> bool:
    if value is None:
        return False
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist()
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(abs(float(v) - cutoff) < 1e-9 for v in value)
    return abs(float(value) - cutoff) < 1e-9


class EquivariantModel(SurrogateModel):
    """E(3)-equivariant, momentum-conserving displacement + velocity surrogate (see module doc).

    ``config``: an :class:`EquivariantConfig` or a dict of its fields (checked).
    """

    arch = "equivariant"
    config_class = EquivariantConfig
    needs_descriptors = False
    predicts_velocity = True
    projects_momentum = True
    reads_given_edges = True
    """A batch's ``edge_index`` / ``shifts`` at ``cutoff == self.cutoff`` are used as given."""

    def __init__(
        self, config: EquivariantConfig | dict, stats: TrainingStats | None = None
    ) -> None:
        super().__init__(config, stats)
        c, st = self.hparams, self.stats
        if len(st.strides_fs) != len(st.dvel_rms) or not st.strides_fs:
            raise ValueError(
                f"equivariant model: stats 'strides_fs' ({len(st.strides_fs)} values) and "
                f"'dvel_rms' ({len(st.dvel_rms)} values) must be non-empty and of equal length"
            )
        if c.use_cueq:
            from ._tp_cueq import require_cueq

            require_cueq()

        self.vel_rms = float(st.vel_rms)
        self.vel_eps = float(c.vel_eps)
        species = [int(z) for z in st.species]
        self.num_species = len(species)
        lookup = torch.full((119,), -1, dtype=torch.long)
        lookup[torch.tensor(species, dtype=torch.long)] = torch.arange(len(species))
        self.register_buffer("species_index", lookup, persistent=False)

        order = sorted(range(len(st.strides_fs)), key=lambda k: st.strides_fs[k])
        strides = torch.tensor([float(st.strides_fs[k]) for k in order], dtype=torch.float64)
        dvel = torch.tensor([float(st.dvel_rms[k]) for k in order], dtype=torch.float64)
        register_exact(self, "stride_fs_table", strides)
        register_exact(self, "dvel_rms_table", dvel)
        # the edge vector of a padding slot of the node-major table: beyond the cutoff
        register_exact(self, "padding_vector", torch.tensor([1.5 * c.cutoff, 0.0, 0.0]))

        self.irreps_edge_sh = o3.Irreps.spherical_harmonics(c.lmax)
        self.irreps_vel_sh = o3.Irreps.spherical_harmonics(c.lmax)
        self.sh_ls = list(range(c.lmax + 1))  # plain ints: torch.compile cannot guard Irreps
        self.radial_basis = BesselBasis(self.cutoff, c.num_radial)
        self.envelope = PolynomialCutoff(self.cutoff, c.cutoff_p)
        self.speed_rbf = GaussianRBF(0.0, c.speed_max, c.speed_basis, exact=True)
        self.dt_rbf = GaussianRBF(*st.dt_range_fs, c.cond_basis, exact=True)
        self.temp_rbf = GaussianRBF(*st.temperature_range_K, c.cond_basis, exact=True)
        num_cond = self.num_species + c.speed_basis + 2 * c.cond_basis

        hidden = hidden_irreps(c.channels, c.lmax, c.odd_parity)
        irreps_embed_in = o3.Irreps(f"{num_cond}x0e") + self.irreps_vel_sh[1:]
        self.embed = o3.Linear(irreps_embed_in, hidden)
        self.radial_trunk = mlp([c.num_radial, *c.radial_mlp], nn.SiLU, last_act=True)
        radial_width = c.radial_mlp[-1] if c.radial_mlp else c.num_radial
        avg_nn = st.avg_num_neighbours(self.cutoff)
        layers = []
        irreps = hidden
        for k in range(c.layers):
            last = k == c.layers - 1
            targets = o3.Irreps(f"{c.channels}x1o") if last else hidden
            layer = InteractionLayer(
                irreps,
                targets,
                self.irreps_edge_sh,
                self.irreps_vel_sh,
                self.num_species,
                radial_width,
                num_cond,
                c.vel_mlp,
                avg_nn,
                c.use_cueq,
            )
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = nn.ModuleList(layers)
        self.readout = o3.Linear(irreps, o3.Irreps("2x1o"))
        self._core_fn = None
        if c.compile:
            self.compiled()

    # ------------------------------------------------------------------ public helpers
    def compiled(self, **kwargs) -> EquivariantModel:
        """torch.compile(dynamic=True) of the tensor core (the tensor part of the forward), in
        place; returns the model."""
        kwargs.setdefault("dynamic", True)
        self._core_fn = torch.compile(self._core, **kwargs)
        return self

    @torch.no_grad()
    def expand_species(
        self, source: EquivariantModel, mapping: Mapping[int, int] | None = None
    ) -> dict[int, int]:
        """Take ``source``'s parameters, in place, for this model's species
        (``self.stats.species``, k of them; ``source`` has its own, any number).

        Every parameter that does not read the species is ``source``'s as it is. Species z of
        this model starts from ``source``'s species ``sources[z]``
        (:func:`species_sources`: ``mapping[z]``, else z itself, else ``source``'s first
        species): its rows of the conditioning block of ``embed`` (input ``num_cond x0e``) and of
        every layer's first ``vel_mlp`` Linear, and its entries on the species axis of every
        ``self_connection`` (input 2 ``k x0e``), rescaled for e3nn's fan-in normalisation
        (:func:`_copy_paths`). Then a box whose atoms are all species z gives ``source``'s
        outputs for the same box of ``sources[z]`` atoms, to floating-point rounding, for the
        same statistics (a fine-tune uses the new data's, which change the outputs).

        Buffers stay this model's (its statistics' basis centres; the rest are constants).
        Settings other than :data:`~equignnmd.models.base.FINE_TUNABLE` must be ``source``'s.
        Returns ``sources`` ({this model's species: ``source``'s}).
        """
        differ = sorted(
            k for k, v in self.config.items() if k not in FINE_TUNABLE and source.config.get(k) != v
        )
        if not isinstance(source, EquivariantModel) or differ:
            raise ValueError(
                f"expand_species: the trained model is a {type(source).__name__} with settings "
                f"{differ} differing; expected an equivariant model with the same settings"
            )
        learned = [int(z) for z in source.stats.species]
        sources = species_sources(learned, [int(z) for z in self.stats.species], mapping)
        rows = torch.tensor([learned.index(sources[z]) for z in self.stats.species])
        old_cond = source.layers[0].vel_mlp[0].in_features
        cond_rows = torch.cat([rows, torch.arange(source.num_species, old_cond)])

        species_params = {id(self.embed.weight)}
        for layer in self.layers:
            species_params |= {id(layer.vel_mlp[0].weight), id(layer.self_connection.weight)}
        theirs = dict(source.named_parameters())
        if set(theirs) != {name for name, _ in self.named_parameters()}:
            raise ValueError("expand_species: the two models' parameters differ in name")
        for name, param in self.named_parameters():
            if id(param) in species_params:
                continue
            if theirs[name].shape != param.shape:
                raise ValueError(f"expand_species: parameter {name!r} differs in shape")
            param.copy_(theirs[name])

        _copy_paths(self.embed, source.embed, lambda ins: ins.i_in == 0, 0, cond_rows)
        for new, old in zip(self.layers, source.layers, strict=True):
            _copy_paths(new.self_connection, old.self_connection, lambda ins: True, 1, rows)
            weight = old.vel_mlp[0].weight.detach().to("cpu", torch.float64)
            new.vel_mlp[0].weight.copy_(weight.index_select(1, cond_rows))
        return sources

    def dvel_scale(self, dt_fs: torch.Tensor) -> torch.Tensor:
        """RMS velocity change per component at stride ``dt_fs`` (fs), Å/ps, shape of ``dt_fs``
        (:func:`~equignnmd.models.layers.stride_scale`)."""
        strides = exact(self.stride_fs_table, dt_fs.dtype)
        return stride_scale(dt_fs, strides, exact(self.dvel_rms_table, dt_fs.dtype))

    # ------------------------------------------------------------------ forward
    def _edges(self, batch, pos, cell, graph):
        edge_index = getattr(batch, "edge_index", None)
        shifts = getattr(batch, "shifts", None)
        if (
            edge_index is not None
            and shifts is not None
            and _same_cutoff(getattr(batch, "cutoff", None), self.cutoff)
        ):
            return edge_index.to(pos.device), shifts.to(device=pos.device, dtype=pos.dtype)
        return neighbour_list(pos, cell, self.cutoff, graph)

    def interaction_layers(self) -> list[nn.Module]:
        return list(self.layers)

    def forward(self, batch) -> Prediction:
        param = self.embed.weight
        dtype, device = param.dtype, param.device
        pos = batch.pos.to(device=device, dtype=dtype)
        vel = batch.vel.to(device=device, dtype=dtype)
        cell = batch.cell.to(device=device, dtype=dtype).reshape(-1, 3, 3)
        mass = batch.mass.to(device=device, dtype=dtype)
        dt_fs = torch.as_tensor(batch.dt_fs, device=device, dtype=dtype).reshape(-1)
        temp = torch.as_tensor(batch.temperature_K, device=device, dtype=dtype).reshape(-1)
        temp = self.temperature_input(temp)
        graph = getattr(batch, "batch", None)
        if graph is None:
            graph = torch.zeros(pos.shape[0], dtype=torch.long, device=device)
        graph = graph.to(device)
        z = batch.species.to(device)
        last = self.species_index.numel() - 1
        species = self.species_index[z.clamp(0, last)]
        unknown = (species < 0) | (z > last)  # clamped: any integer reaches this message
        if bool(unknown.any()):
            bad = sorted(set(batch.species.cpu()[unknown.cpu()].tolist()))
            raise ValueError(
                f"equivariant model: field 'species' contains atomic numbers {bad}; "
                f"this model knows {list(self.stats.species)}"
            )
        edge_index, shifts = self._edges(batch, pos, cell, graph)
        real = None
        if self._core_fn is not None and not self.config.get("use_cueq"):
            # compiled: the node-major table where its padding costs little (a crystal's
            # atoms have nearly equal neighbour counts; a slab or liquid may not)
            table, table_shifts, table_real = node_major_edges(edge_index, shifts, pos.shape[0])
            if table_real.numel() <= MAX_PADDING * max(edge_index.shape[1], 1):
                edge_index, shifts, real = table, table_shifts, table_real
        for layer in self.layers:  # a few layers, not atoms: backend kernels ready on `device`
            layer.prepare(device)
        core = self._core_fn if self._core_fn is not None else self._core
        disp, vel_new = core(
            pos, vel, cell, mass, species, graph, dt_fs, temp, edge_index, shifts, real
        )
        return Prediction(disp, vel_new)

    def _core(self, pos, vel, cell, mass, species, graph, dt_fs, temp, edge_index, shifts, real):
        """``edge_index`` (2, E), ``shifts`` (E, 3) and ``real`` None; or the node-major table
        of :func:`~equignnmd.graph.node_major_edges`: (2, N, M), (N, M, 3), (N, M) bool."""
        num_graphs = cell.shape[0]
        slots = None
        if real is not None:
            nodes, slots = real.shape
            edge_index = edge_index.reshape(2, nodes * slots)
            shifts = shifts.reshape(nodes * slots, 3)
        src, dst = edge_index[0], edge_index[1]

        # edges: harmonics, radial basis, envelope
        r_vec = edge_vectors(pos, cell, edge_index, shifts, graph)
        if real is not None:  # a padding slot: beyond the cutoff, so its envelope is exactly 0
            far = exact(self.padding_vector, r_vec.dtype)
            r_vec = torch.where(real.reshape(-1, 1), r_vec, far)
        r = torch.linalg.vector_norm(r_vec, dim=-1)
        edge_sh = o3.spherical_harmonics(
            self.sh_ls, r_vec, normalize=True, normalization="component"
        )
        radial = self.radial_trunk(self.radial_basis(r))
        envelope = self.envelope(r)

        # nodes: species, speed, Δt, T scalars and velocity-direction harmonics
        onehot = nn.functional.one_hot(species, self.num_species).to(pos.dtype)
        u = vel / self.vel_rms
        speed = torch.sqrt((u * u).sum(-1) + self.vel_eps**2)
        vel_sh = o3.spherical_harmonics(
            self.sh_ls, u / speed.unsqueeze(-1), normalize=False, normalization="component"
        )
        dt_node = dt_fs[graph]
        cond = torch.cat(
            [onehot, self.speed_rbf(speed), self.dt_rbf(dt_node), self.temp_rbf(temp[graph])], -1
        )
        x = self.embed(torch.cat([cond, vel_sh[:, 1:]], -1))
        for layer in self.layers:
            x = layer(x, onehot, src, dst, edge_sh, radial, envelope, vel_sh, cond, slots)
        out = self.readout(x)

        # de-normalise, then remove the per-graph mass-weighted mean of the learned parts
        dt_ps = fs_to_ps(dt_node)
        s_v = self.dvel_scale(dt_fs)[graph].unsqueeze(-1)
        dvel = s_v * out[:, 3:6]
        resid = 0.5 * s_v * dt_ps.unsqueeze(-1) * out[:, 0:3]
        if self.centre_per_graph:
            m = mass.unsqueeze(-1)
            total = scatter(mass, graph, dim=0, dim_size=num_graphs, reduce="sum").unsqueeze(-1)
            both = scatter(m * torch.cat([dvel, resid], -1), graph, 0, dim_size=num_graphs)
            mean = (both / total)[graph]
        else:  # the caller removes the means of the whole system (SurrogateModel docstring)
            mean = torch.zeros_like(out[:, :6])
        vel_new = vel + (dvel - mean[:, 0:3])
        disp = vel * dt_ps.unsqueeze(-1) + (resid - mean[:, 3:6])
        return disp, vel_new


__all__ = [
    "EdgeConvolution",
    "EquivariantConfig",
    "EquivariantModel",
    "InteractionLayer",
    "channelwise_tp",
    "hidden_irreps",
    "species_sources",
]

"""The learned potential: an embedded-atom-form energy, linear in its coefficients.

It is two things with one form: the ``symplectic`` model's potential (velocity Verlet over it,
:mod:`equignnmd.models.symplectic`), and a checkpoint's own potential energy. A force-free
surrogate has no energy; to conserve the total energy of its trajectories
without the reference potential at hand (:class:`~equignnmd.rollout.stages.EnergyRescale`),
a checkpoint can carry an *energy head* fitted to the potential energies and forces its
training data recorded (``equignnmd energy-head``, :mod:`equignnmd.potential.fit`). The head reads
positions only, through the model's graph (same cutoff, same neighbour list), not the model's
hidden features: those read velocities, and a potential energy must not.

Its form is the embedded-atom method's, linear in its coefficients so that the fit is one
least-squares solve over energies and forces (seconds, no optimiser to tune):

    U = Σ_i [ e₀(s_i) + ½ Σ_j Σ_k a_{k,s_i s_j} B_k(r_ij) + Σ_{d,m} b_{d,m,s_i} (x_{i,d} − 1)^m ],
    x_{i,d} = ρ_{i,d} / ρ̄_d,   ρ_{i,d} = Σ_j exp(−β_d r_ij / r_c) c(r_ij),

with B_k the Bessel basis times the smooth envelope c (:class:`~equignnmd.radial.BesselBasis`,
:class:`~equignnmd.radial.PolynomialCutoff`: U and its forces are continuous at the cutoff r_c), d
over the ``density_decays`` β_d, m = 1..``embedding_order`` and ρ̄_d the mean density of the fit
data. :meth:`EnergyHead.features` gives the per-system sums that multiply the coefficients; the fit
and the forward share it, so they cannot disagree. Everything runs in float64 (the head is tiny): a
500-atom total keeps sub-meV precision.

Below the closest pair of the fit data the form is unconstrained, and a rich pair basis can
turn attractive there (a 40-function fit of the Mendelev file has a 3-eV hole at 1.8 Å, which
an 800-K run falls into). With ``core_radius`` and ``core_strength`` set, below r_core every
pair basis function is replaced by its quadratic Taylor continuation from r_core (C², so the
fitted function's free oscillations below the data never enter) and a fixed repulsion
A (r_core − r)³ is added (not fitted; the fit subtracts it from the energies and forces
first): a smooth wall as soft as the reference's, not a stiff one on top of a hole (a stiff
wall needs shorter steps than the rest of the dynamics).

Cost: one neighbour list and ~20 basis functions over the edges, a few per cent of a model
step.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config import ConfigError, check_hparams
from ..graph import edge_vectors, neighbour_list, squared_norm
from ..radial import BesselBasis, PolynomialCutoff

__all__ = [
    "FORM_FIELDS",
    "TABLE_SPACING_A",
    "VOIGT",
    "EnergyHead",
    "EnergyHeadConfig",
    "RadialTable",
]

TABLE_SPACING_A = 0.001
"""Knot spacing, Å, of the cubic tables a rollout reads the pair and density functions from
(:class:`RadialTable`): forces equal the closed form's to ~1e-9 relative (tested)."""

VOIGT = (torch.tensor([0, 1, 2, 1, 0, 0]), torch.tensor([0, 1, 2, 2, 2, 1]))
"""Cartesian index pairs (a, b) of the six Voigt components xx, yy, zz, yz, xz, xy."""

FORM_FIELDS = ("num_radial", "density_decays", "embedding_order", "core_radius", "core_strength")
"""The :class:`EnergyHeadConfig` fields that choose the fitted form (besides the cutoff, which
is the model's, and the species, which are the data's): what the fit's settings and the
``symplectic`` model's config pass on to a head."""


@dataclass
class EnergyHeadConfig:
    """Hyperparameters of an :class:`EnergyHead` (lengths in Å)."""

    cutoff: float = 5.5
    """Radius of the pair and density functions, Å (the model's cutoff by default)."""
    species: list[int] = field(default_factory=lambda: [13])
    """Atomic numbers the head knows, in the order of its per-species coefficients."""
    num_radial: int = 12
    """Bessel functions B_k of the pair term."""
    cutoff_p: int = 6
    """Order of the polynomial cutoff envelope."""
    density_decays: list[float] = field(default_factory=lambda: [4.0, 8.0])
    """β_d of the densities exp(−β_d r / r_c) c(r)."""
    embedding_order: int = 4
    """Highest power m of (x − 1) in the embedding energy."""
    core_radius: float = 0.0
    """r_core, Å: below it the pair function is the quadratic continuation of the fitted one
    plus the fixed core repulsion (0: neither). Set it at the closest pair of the fit data,
    below which the fitted form is unconstrained."""
    core_strength: float = 0.0
    """A, eV/Å³, of the core repulsion ½ Σ_{i≠j} A (r_core − r_ij)³ over pairs r_ij < r_core."""

    def validate(self, source: str) -> None:
        if not 0.0 <= self.core_radius < self.cutoff or self.core_strength < 0.0:
            raise ConfigError(
                f"{source}: fields 'core_radius' = {self.core_radius}, 'core_strength' = "
                f"{self.core_strength}; expected 0 ≤ core_radius < cutoff and core_strength ≥ 0"
            )
        for name in ("cutoff", "num_radial", "cutoff_p", "embedding_order"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"{source}: field '{name}' is {getattr(self, name)}; expected > 0"
                )
        if not self.density_decays or any(not b > 0 for b in self.density_decays):
            raise ConfigError(
                f"{source}: field 'density_decays' is {self.density_decays}; expected "
                "positive numbers"
            )
        if not self.species or len(set(self.species)) != len(self.species):
            raise ConfigError(
                f"{source}: field 'species' is {self.species}; expected distinct atomic numbers"
            )


class RadialTable:
    """Functions of the pair distance as C¹ piecewise cubics on a uniform grid (cubic Hermite:
    value and r-derivative exact at every knot), as LAMMPS reads an EAM file's tables.

    Built by :meth:`EnergyHead.tabulate`. Columns: the pair function φ of every (distinct
    coefficient row, species pair), then the D density functions. Knots at r = k·``step``,
    k = 1 … K, the last one the cutoff; every function is zero beyond it (the envelope is, to
    second order), so a pair at or past the cutoff reads an all-zero interval, and a pair
    closer than one step reads the first interval's cubic, extended.

    Attributes: ``poly`` (K, F, 4) float64, each interval's cubic in its own coordinate
    u = r/step − k ∈ [0, 1) (the last interval zero); ``step`` Å; ``replica_row`` (R,) the
    distinct coefficient row of every replica; ``n_pairs`` species pairs P;
    ``n_pair_functions`` rows × P (the first columns).
    """

    def __init__(self, poly: torch.Tensor, step: float, replica_row: torch.Tensor, n_pairs: int):
        self.poly, self.step = poly, float(step)
        self.replica_row, self.n_pairs = replica_row, int(n_pairs)
        self.n_pair_functions = (int(replica_row.max()) + 1) * self.n_pairs
        # each cubic coefficient as one flat table [f·K + k]: an edge reads four 1-D gathers
        # and works on contiguous (E,) columns (a strided (E, F, 4) block is ~3× slower)
        self._flat = poly.permute(2, 1, 0).reshape(4, -1).contiguous()

    @classmethod
    def hermite(cls, values, slopes, step: float, replica_row, n_pairs: int) -> RadialTable:
        """From ``values`` and r-derivatives ``slopes`` (K, F) at the knots k·step, k = 1 … K."""
        y0, y1 = values[:-1], values[1:]
        m0, m1 = step * slopes[:-1], step * slopes[1:]
        poly = torch.stack(
            [y0, m0, 3.0 * (y1 - y0) - 2.0 * m0 - m1, 2.0 * (y0 - y1) + m0 + m1], dim=-1
        )
        poly = torch.cat([poly, torch.zeros_like(poly[:1])])  # at and beyond the cutoff: zero
        return cls(poly, step, replica_row, n_pairs)

    def column(self, graph_e: torch.Tensor, pair_id: torch.Tensor) -> torch.Tensor:
        """(E,) the pair-function column of edges in replicas ``graph_e`` with species pairs
        ``pair_id`` (:meth:`EnergyHead.pair_ids`)."""
        return self.replica_row.index_select(0, graph_e) * self.n_pairs + pair_id

    def _cubic(self, index: torch.Tensor, u: torch.Tensor):
        c0, c1, c2, c3 = (self._flat[j].index_select(0, index) for j in range(4))
        value = ((c3 * u + c2) * u + c1) * u + c0
        return value, ((3.0 * c3 * u + 2.0 * c2) * u + c1) / self.step

    def __call__(self, r: torch.Tensor, column: torch.Tensor | None = None):
        """``(φ, dφ/dr, ρ, dρ/dr)`` as :meth:`EnergyHead.radial_functions`, for edge lengths
        ``r`` (E,) Å; ``column`` (E,) each edge's pair function (None: the first, the only
        one)."""
        n_k = self.poly.shape[0]
        x = r / self.step
        k = (torch.floor(x).long() - 1).clamp_(0, n_k - 1)
        u = x - 1.0 - k
        phi, dphi = self._cubic(k if column is None else column * n_k + k, u)
        columns = range(self.n_pair_functions, self.poly.shape[1])  # the densities
        rho, drho = zip(*(self._cubic(k + f * n_k, u) for f in columns))
        return phi, dphi, torch.stack(rho, 1), torch.stack(drho, 1)


class EnergyHead(nn.Module):
    """U(positions) of periodic systems, eV (the form: module docstring).

    Buffers in the ``state_dict``, set by the fit: ``coefficients`` (C,) eV (the a, b and e₀
    above, in the order of :meth:`features`), ``density_scale`` (D,) ρ̄_d.
    """

    def __init__(self, config: EnergyHeadConfig | dict):
        super().__init__()
        self.hparams = check_hparams(EnergyHeadConfig, config, "energy head config")
        self.config = dataclasses.asdict(self.hparams)
        h = self.hparams
        self.cutoff = float(h.cutoff)
        self.n_species = len(h.species)
        self.basis = BesselBasis(h.cutoff, h.num_radial).double()
        self.envelope = PolynomialCutoff(h.cutoff, h.cutoff_p)
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.as_tensor(h.species)] = torch.arange(self.n_species)
        self.register_buffer("species_index", table, persistent=False)
        decays = torch.as_tensor(h.density_decays, dtype=torch.float64)
        self.register_buffer("decays", decays, persistent=False)
        self.register_buffer("density_scale", torch.ones(len(decays), dtype=torch.float64))
        self.register_buffer("coefficients", torch.zeros(self.n_features, dtype=torch.float64))
        taylor = self._inner_taylor() if self.has_core else torch.zeros(3, h.num_radial)
        self.register_buffer("inner_taylor", taylor.to(torch.float64), persistent=False)

    @property
    def has_core(self) -> bool:
        """Whether the fixed core repulsion is on (``core_radius`` and ``core_strength`` > 0)."""
        return self.hparams.core_radius > 0.0 and self.hparams.core_strength > 0.0

    def core_pair(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The core repulsion A (r_core − r)³ of each pair (E,) eV and its r-derivative (E,)
        eV/Å for edge lengths ``r`` (E,) Å; zero at and beyond r_core (and C² there)."""
        h = self.hparams
        gap = (h.core_radius - r).clamp_min(0.0)
        return h.core_strength * gap**3, -3.0 * h.core_strength * gap**2

    def core_energy(self, pos, cell, batch, n_replicas: int) -> torch.Tensor:
        """(R,) float64 eV: the core repulsion per system, differentiable in ``pos`` (its own
        neighbour list at r_core: a few pairs at most; zeros without a core). Not one of the
        :meth:`features`: no coefficient multiplies it, and the fit subtracts it first."""
        energy = torch.zeros(n_replicas, dtype=torch.float64, device=pos.device)
        if not self.has_core:
            return energy
        cell = cell.reshape(-1, 3, 3).to(torch.float64)
        pos = pos.to(torch.float64)
        edge_index, shifts = neighbour_list(pos, cell, self.hparams.core_radius, batch)
        r = edge_vectors(pos, cell, edge_index, shifts, batch).norm(dim=-1)
        return energy.index_add(0, batch[edge_index[1]], 0.5 * self.core_pair(r)[0])

    def _inner_taylor(self) -> torch.Tensor:
        """(3, K) float64: g_k, dg_k/dr and d²g_k/dr² of the pair basis g_k = B_k c at
        r_core, in closed form (the continuation below it, :meth:`pair_basis`)."""
        r = torch.tensor([float(self.hparams.core_radius)], dtype=torch.float64)
        (b0, b1), b2 = self.basis.with_derivative(r), self.basis.curvature(r)
        (c0, c1), c2 = self.envelope.with_derivative(r), self.envelope.curvature(r)
        b0, b1, b2, c0, c1, c2 = b0[0], b1[0], b2[0], c0[0], c1[0], c2[0]
        return torch.stack([b0 * c0, b1 * c0 + b0 * c1, b2 * c0 + 2.0 * b1 * c1 + b0 * c2])

    def pair_basis(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g_k(r), dg_k/dr), each (E, K), of edge lengths ``r`` (E,) Å: the Bessel basis
        times the envelope, g_k = B_k c; with a core, below r_core its quadratic Taylor
        continuation from r_core instead (C², linear in the coefficients like the rest), so
        that the fitted function's free oscillations below the data never enter and the
        core repulsion alone rises there (differentiable: the fit's autograd path uses it)."""
        env, denv = self.envelope.with_derivative(r)
        basis, dbasis = self.basis.with_derivative(r)
        g = basis * env.unsqueeze(-1)
        dg = dbasis * env.unsqueeze(-1) + basis * denv.unsqueeze(-1)
        if not self.has_core:
            return g, dg
        t0, t1, t2 = self.inner_taylor.to(r.dtype)
        x = (r - self.hparams.core_radius).clamp_max(0.0).unsqueeze(-1)
        inside = (x < 0.0).expand_as(g)
        return torch.where(inside, t0 + x * (t1 + 0.5 * t2 * x), g), torch.where(
            inside, t1 + t2 * x, dg
        )

    @property
    def n_features(self) -> int:
        """C: pair terms per unordered species pair, embedding terms per species, e₀."""
        h, s = self.hparams, self.n_species
        return h.num_radial * s * (s + 1) // 2 + len(h.density_decays) * h.embedding_order * s + s

    def species_of(self, species: torch.Tensor, where: str = "energy head") -> torch.Tensor:
        """(N,) indices into the head's species for atomic numbers ``species``."""
        idx = self.species_index[species.clamp(0, 118)]
        if bool((idx < 0).any()):
            unknown = sorted({int(z) for z in species[idx < 0].tolist()})
            raise ValueError(
                f"{where}: field 'species' has atomic numbers {unknown}, which have no energy "
                f"function; expected only {self.hparams.species} (the species the head was "
                "fitted on)"
            )
        return idx

    def pair_ids(self, s: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """(E,) the unordered species pair of every edge, an index into the pair blocks of
        the coefficients; ``s`` (N,) the head's species indices (:meth:`species_of`)."""
        lo, hi = torch.minimum(s[src], s[dst]), torch.maximum(s[src], s[dst])
        return lo * self.n_species - lo * (lo - 1) // 2 + (hi - lo)

    def density_functions(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_d(r), df_d/dr), each (E, D), of edge lengths ``r`` (E,) Å: the density
        functions f_d = exp(−β_d r / r_c) c(r)."""
        env, denv = self.envelope.with_derivative(r)
        expo = torch.exp(-self.decays.to(r.dtype) * (r / self.cutoff).unsqueeze(-1))
        slope = denv.unsqueeze(-1) - self.decays.to(r.dtype) / self.cutoff * env.unsqueeze(-1)
        return expo * env.unsqueeze(-1), expo * slope

    @staticmethod
    def densities(per_edge: torch.Tensor, dst: torch.Tensor, n_atoms: int) -> torch.Tensor:
        """(N, D) densities ρ_{i,d}: the per-edge values f_d(r) (E, D) summed on ``dst``."""
        out = torch.zeros(n_atoms, per_edge.shape[1], dtype=per_edge.dtype, device=per_edge.device)
        return out.index_add_(0, dst, per_edge)

    def features(
        self,
        pos: torch.Tensor,
        cell: torch.Tensor,
        species: torch.Tensor,
        batch: torch.Tensor,
        n_replicas: int | None = None,
    ) -> torch.Tensor:
        """(R, C) float64: the per-system sums the coefficients multiply (U = features @
        coefficients); differentiable in ``pos`` (forces).

        Args:
            pos: (N, 3) positions, Å; cell: (R, 3, 3) rows are lattice vectors, Å;
            species: (N,) atomic numbers; batch: (N,) system of every atom, sorted.
        """
        h, n_s = self.hparams, self.n_species
        cell = cell.reshape(-1, 3, 3).to(torch.float64)
        pos = pos.to(torch.float64)
        n_rep, n = int(n_replicas or cell.shape[0]), pos.shape[0]
        s = self.species_of(species)
        edge_index, shifts = neighbour_list(pos, cell, self.cutoff, batch)
        src, dst = edge_index
        r = edge_vectors(pos, cell, edge_index, shifts, batch).norm(dim=-1)
        # pair terms: ½ Σ over the full list (both directions), one column block per
        # unordered species pair
        pair_id = self.pair_ids(s, src, dst)
        radial = 0.5 * self.pair_basis(r)[0]
        pair = torch.zeros(n_rep, n_s * (n_s + 1) // 2, h.num_radial, dtype=r.dtype)
        pair = pair.to(r.device).index_put_((batch[dst], pair_id), radial, accumulate=True)
        # embedding terms: (x − 1)^m per density and power, one block per species of i
        x = self.densities(self.density_functions(r)[0], dst, n) / self.density_scale - 1.0
        powers = torch.arange(1, h.embedding_order + 1, device=x.device, dtype=x.dtype)
        emb_atom = (x.unsqueeze(-1) ** powers).reshape(n, -1)
        emb = torch.zeros(n_rep, n_s, emb_atom.shape[1], dtype=r.dtype, device=r.device)
        emb = emb.index_put_((batch, s), emb_atom, accumulate=True)
        counts = torch.zeros(n_rep, n_s, dtype=r.dtype, device=r.device)
        counts = counts.index_put_((batch, s), torch.ones_like(s, dtype=r.dtype), accumulate=True)
        return torch.cat([pair.reshape(n_rep, -1), emb.reshape(n_rep, -1), counts], dim=1)

    def _edge_slopes(self, pos, cell, species, batch):
        """∂(:meth:`features`)/∂r_e per edge and column (E, C), the edge vectors (E, 3) Å,
        their lengths (E,) and the edge index: what both designs (forces, virials) sum."""
        h, n_s = self.hparams, self.n_species
        f64 = torch.float64
        cell = cell.reshape(-1, 3, 3).to(f64)
        pos = pos.detach().to(f64)
        n = pos.shape[0]
        s = self.species_of(species)
        edge_index, shifts = neighbour_list(pos, cell, self.cutoff, batch)
        src, dst = edge_index
        vectors = edge_vectors(pos, cell, edge_index, shifts, batch)
        r = squared_norm(vectors).sqrt()
        n_e, n_p, n_k = r.shape[0], n_s * (n_s + 1) // 2, h.num_radial
        # dFeature/dr per edge and column: pair columns ½ d(B_k c)/dr in the edge's block
        dpair = 0.5 * self.pair_basis(r)[1]
        pair = torch.zeros(n_e, n_p, n_k, dtype=f64, device=r.device)
        pair[torch.arange(n_e, device=r.device), self.pair_ids(s, src, dst)] = dpair
        # embedding columns of the receiving atom's species: m x^(m−1) / ρ̄_d · dρ_d/dr
        dens, ddens = self.density_functions(r)
        scale = self.density_scale.to(f64)
        x = self.densities(dens, dst, n) / scale - 1.0
        m = torch.arange(1, h.embedding_order + 1, dtype=f64, device=r.device)
        dxm = m * x.unsqueeze(-1) ** (m - 1) / scale.unsqueeze(-1)  # (N, D, M)
        demb = dxm.index_select(0, dst) * ddens.unsqueeze(-1)  # (E, D, M)
        emb = torch.zeros(n_e, n_s, *demb.shape[1:], dtype=f64, device=r.device)
        emb[torch.arange(n_e, device=r.device), s.index_select(0, dst)] = demb
        weights = torch.cat([pair.reshape(n_e, -1), emb.reshape(n_e, -1)], dim=1)
        weights = torch.cat(
            [weights, weights.new_zeros(n_e, self.n_features - weights.shape[1])], 1
        )
        return weights, vectors, r, edge_index

    def force_features(
        self, pos: torch.Tensor, cell: torch.Tensor, species: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """(N, 3, C) float64: −∂(:meth:`features`)/∂positions in closed form, the force
        design of the least-squares fit (forces = force_features @ coefficients); equal to
        the autograd gradient to rounding (tested), and one pass instead of one backward per
        coefficient. Arguments as :meth:`features`."""
        weights, vectors, r, (src, dst) = self._edge_slopes(pos, cell, species, batch)
        # forces along the edge, r = |r_src − r_dst + shift|: +dst, −src (energy_and_forces)
        grad = weights.unsqueeze(1) * (vectors / r.unsqueeze(-1)).unsqueeze(-1)  # (E, 3, C)
        out = torch.zeros(pos.shape[0], 3, weights.shape[1], dtype=torch.float64, device=r.device)
        return out.index_add_(0, dst, grad).index_add_(0, src, -grad)

    def virial_features(
        self,
        pos: torch.Tensor,
        cell: torch.Tensor,
        species: torch.Tensor,
        batch: torch.Tensor,
        n_replicas: int | None = None,
    ) -> torch.Tensor:
        """(R, 6, C) float64: ∂(:meth:`features`)/∂ε of a homogeneous strain ε of each
        system (positions and cell × (1 + ε)), Voigt order xx, yy, zz, yz, xz, xy: the stress
        design of the fit (∂U/∂ε = virial_features @ coefficients = −V σ, σ the virial
        stress; dr/dε_ab = r_a r_b / r per edge). Arguments as :meth:`features`."""
        weights, vectors, r, (_, dst) = self._edge_slopes(pos, cell, species, batch)
        n_rep = int(n_replicas or cell.reshape(-1, 3, 3).shape[0])
        a, b = VOIGT
        outer = vectors[:, a] * vectors[:, b] / r.unsqueeze(-1)  # (E, 6)
        per_edge = outer.unsqueeze(-1) * weights.unsqueeze(1)  # (E, 6, C)
        out = torch.zeros(n_rep, 6, weights.shape[1], dtype=torch.float64, device=r.device)
        return out.index_add_(0, batch.index_select(0, dst), per_edge)

    def split_coefficients(self, coefficients: torch.Tensor):
        """Per-replica coefficient tables from (R, C) rows in the order of :meth:`features`:
        pair (R, P, K), embedding (R, S, D, M), constants (R, S)."""
        h, n_s = self.hparams, self.n_species
        n_p, n_k = n_s * (n_s + 1) // 2, h.num_radial
        n_d, n_m = len(h.density_decays), h.embedding_order
        r = coefficients.shape[0]
        pair = coefficients[:, : n_p * n_k].reshape(r, n_p, n_k)
        emb = coefficients[:, n_p * n_k : n_p * n_k + n_s * n_d * n_m].reshape(r, n_s, n_d, n_m)
        return pair, emb, coefficients[:, -n_s:]

    def radial_functions(self, r: torch.Tensor, a: torch.Tensor):
        """The pair function φ (½ per directed edge, core included) and the densities of
        edge lengths ``r`` (E,) Å, in closed form: ``(φ, dφ/dr)`` each (E,) eV and eV/Å,
        ``(ρ_d, dρ_d/dr)`` each (E, D), for pair coefficients ``a`` (K,) shared by all edges
        or (E, K) per edge."""
        # the pair basis (B_k c, continued below a core) with its r-derivative
        g, dg = self.pair_basis(r)
        if a.dim() == 1:
            phi, dphi = 0.5 * (g @ a), 0.5 * (dg @ a)
        else:
            phi, dphi = 0.5 * (g * a).sum(-1), 0.5 * (dg * a).sum(-1)
        if self.has_core:
            core, dcore = self.core_pair(r)
            phi, dphi = phi + 0.5 * core, dphi + 0.5 * dcore
        return (phi, dphi, *self.density_functions(r))

    def tabulate(self, coefficients: torch.Tensor, spacing_A: float) -> RadialTable:
        """The :meth:`radial_functions` of per-replica ``coefficients`` (R, C) as cubic
        tables at knot spacing ``spacing_A`` (≤; the cutoff is a knot), for
        :meth:`energy_and_forces`: the per-edge cost then no longer grows with the basis."""
        f64 = torch.float64
        coefficients = coefficients.detach().to(f64)
        rows, replica_row = torch.unique(coefficients, dim=0, return_inverse=True)
        pair_c = self.split_coefficients(rows)[0]  # (U, P, K)
        n_knots = max(2, math.ceil(self.cutoff / spacing_A))
        step = self.cutoff / n_knots
        grid = step * torch.arange(1, n_knots + 1, dtype=f64, device=coefficients.device)
        values, slopes = [], []
        for a in pair_c.reshape(-1, pair_c.shape[-1]):  # a few functions, not edges
            phi, dphi, dens, ddens = self.radial_functions(grid, a)
            values.append(phi[:, None])
            slopes.append(dphi[:, None])
        values = torch.cat([*values, dens], dim=1)
        slopes = torch.cat([*slopes, ddens], dim=1)
        return RadialTable.hermite(values, slopes, step, replica_row, pair_c.shape[1])

    def energy_and_forces(
        self,
        pos: torch.Tensor,
        species: torch.Tensor,
        batch: torch.Tensor,
        coefficients: torch.Tensor,
        edge_index: torch.Tensor,
        vectors: torch.Tensor,
        table: RadialTable | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """U (R,) eV and its forces −∇U (N, 3) eV/Å without autograd, for per-replica
        ``coefficients`` (R, C): in closed form (the same function as ``features @
        coefficients`` and its gradient, tested), or with the pair and density functions read
        from ``table`` (:meth:`tabulate` of the same coefficients: exact forces of a C¹
        piecewise-cubic potential, equal to the closed form to ~1e-9 relative at 0.001 Å,
        tested); the rollout kernel of the ``symplectic`` model.

        Args:
            pos: (N, 3) Å (only its size and dtype are read); species: (N,) atomic numbers;
            batch: (N,) replica of every atom; edge_index: (2, E) ``[src, dst]``, the full
            list within the cutoff (both directions); vectors: (E, 3) Å,
            r_src − r_dst + shift (:func:`~equignnmd.graph.edge_vectors`).
        """
        h = self.hparams
        f64 = torch.float64
        vectors, coefficients = vectors.to(f64), coefficients.to(f64)
        n, n_rep = pos.shape[0], coefficients.shape[0]
        s = self.species_of(species)
        src, dst = edge_index
        r = squared_norm(vectors).sqrt()
        pair_c, emb_c, const_c = self.split_coefficients(coefficients)
        graph_e = batch.index_select(0, dst)
        one = n_rep * pair_c.shape[1] == 1  # one replica, one species pair: no per-edge gather
        if table is not None:
            single = table.n_pair_functions == 1
            column = None if single else table.column(graph_e, self.pair_ids(s, src, dst))
            phi, dphi, dens, ddens = table(r, column)
        else:
            a = pair_c[0, 0] if one else pair_c[graph_e, self.pair_ids(s, src, dst)]
            phi, dphi, dens, ddens = self.radial_functions(r, a)
        # embedding Σ_{d,m} b_{d,m} (ρ_d / ρ̄_d − 1)^m of the densities received by dst
        rho = self.densities(dens, dst, n)
        scale = self.density_scale.to(f64)
        xd = rho / scale - 1.0
        b = emb_c[batch, s]  # (N, D, M)
        m = torch.arange(1, h.embedding_order + 1, dtype=f64, device=r.device)
        powers = xd.unsqueeze(-1) ** (m - 1)  # x^(m−1), m = 1..M
        emb = (b * powers * xd.unsqueeze(-1)).sum((-1, -2))
        demb = (b * m * powers).sum(-1) / scale  # dU/dρ_{i,d}
        # dU/dr per edge, then forces along the edge: r = |r_src − r_dst + shift|
        # (a loop over the few densities, not a reduction over a short last axis: faster)
        demb_e = demb.index_select(0, dst)
        w = dphi
        for d in range(ddens.shape[1]):
            w = w + demb_e[:, d] * ddens[:, d]
        grad_e = (w / r).unsqueeze(-1) * vectors
        forces = torch.zeros(n, 3, dtype=f64, device=r.device)
        forces.index_add_(0, dst, grad_e).index_add_(0, src, -grad_e)
        energy = torch.zeros(n_rep, dtype=f64, device=r.device).index_add_(0, graph_e, phi)
        energy.index_add_(0, batch, emb + const_c[batch, s])
        return energy, forces

    def forward(self, pos, cell, species, batch, n_replicas: int | None = None) -> torch.Tensor:
        """Potential energy per system, (R,) float64 eV (arguments as :meth:`features`)."""
        feats = self.features(pos, cell, species, batch, n_replicas)
        return feats @ self.coefficients + self.core_energy(pos, cell, batch, feats.shape[0])

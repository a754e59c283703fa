"""Structural descriptors per atom: CSP, CNA label, Q4, Q6, CN.

Two sources that must agree: LAMMPS' own computes (recorded in reference data) and the torch
implementation below (used at rollout time, where LAMMPS is not there). The LAMMPS settings:

==========  ==========================================================  =====================
column      LAMMPS compute                                               meaning
==========  ==========================================================  =====================
csp         ``centro/atom fcc`` (12 nearest neighbours)                 Å², 0 for perfect FCC
cna         ``cna/atom 3.4587`` (0.854 × a0, the material's lattice)   0 unknown, 1 FCC,
                                                                        2 HCP, 3 BCC, 4 ICO,
                                                                        5 other
q4, q6      ``orientorder/atom nnn 12 degrees 2 4 6 cutoff 4.5``        Steinhardt Q_l
cn          ``coord/atom cutoff 3.5``                                   neighbours < 3.5 Å
==========  ==========================================================  =====================

The CNA cutoff follows the :class:`~equignnmd.materials.Material` (default
:data:`~equignnmd.materials.ALUMINIUM`, 3.4587 Å; 0.854 a for fcc, 1.207 a for bcc and hcp); the
Q and CN cutoffs (4.5 Å and 3.5 Å, between the second and third, first and second FCC shells of
Al) are Al's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .materials import ALUMINIUM, Material

if TYPE_CHECKING:
    import torch

DESCRIPTOR_NAMES = ("csp", "cna", "q4", "q6", "cn")
Q_CUTOFF_A = 4.5
Q_NEIGHBOURS = 12
CN_CUTOFF_A = 3.5


def cna_cutoff_A(material: Material = ALUMINIUM) -> float:
    """The CNA cutoff exactly as LAMMPS reads it from :func:`lammps_compute_commands`, Å
    (0.854 × the lattice constant, printed with 6 decimals)."""
    return float(f"{material.cna_cutoff_A:.6f}")


def lammps_compute_commands(material: Material = ALUMINIUM) -> list[str]:
    """LAMMPS commands that define the descriptor computes (group ``all``)."""
    return [
        "compute eq_csp all centro/atom fcc",
        f"compute eq_cna all cna/atom {cna_cutoff_A(material):.6f}",
        f"compute eq_q all orientorder/atom nnn {Q_NEIGHBOURS} degrees 2 4 6 cutoff {Q_CUTOFF_A}",
        f"compute eq_cn all coord/atom cutoff {CN_CUTOFF_A}",
    ]


def lammps_cutoff_A(material: Material = ALUMINIUM) -> float:
    """The largest cutoff of the descriptor computes, Å: they take their neighbours from the
    pair style's list, so the potential must reach it (a shorter one is overlaid with
    ``pair_style zero``: :meth:`~equignnmd.lammps_potential.LammpsPotential.commands`)."""
    return max(Q_CUTOFF_A, CN_CUTOFF_A, cna_cutoff_A(material))


# "degrees 2 4 6" means two degrees, l = 4 and l = 6: columns 0 and 1.
# (compute id, column or None) for each descriptor, in DESCRIPTOR_NAMES order
LAMMPS_COLUMNS = (("eq_csp", None), ("eq_cna", None), ("eq_q", 0), ("eq_q", 1), ("eq_cn", None))


# ---------------------------------------------------------------------------------------------
# Torch implementation (rollout time). Everything below reproduces the LAMMPS computes above,
# vectorised over atoms: neighbours are padded into dense (N, K) tables sorted by distance.
#
# LAMMPS behaviour replicated (LAMMPS 2025 sources, compute_*_atom.cpp):
# - every cutoff test is strict, ``rsq < cutsq``;
# - centro/atom: the 12 nearest among the neighbours within the *pair* cutoff; CSP = 0 when
#   fewer than 12 are there;
# - orientorder/atom: Q_l = 0 when fewer than ``nnn`` = 12 neighbours lie within the cutoff;
# - cna/atom: atoms without exactly 12 or 14 neighbours are OTHER (5); UNKNOWN (0) marks atoms
#   outside the compute group only, so never occurs for group ``all``; patterns are matched on
#   (ncommon, nbonds, max, min bonds per common neighbour).
# Not replicated: LAMMPS keeps at most 16 neighbours (MAXNEAR) of a neighbour j when it looks
# for common neighbours, truncating in neighbour-list order. That needs a neighbour with more
# than 16 atoms within 3.46 Å (far denser than any Al phase) and is not reproducible anyway.
# MAXCOMMON = 8 truncation cannot change a label: no signature has more than 6 common atoms.
#
# torch and the neighbour list are imported inside the functions: the LAMMPS side
# (data/lammps_md.py, run under mpirun) imports this module for its constants only and stays
# free of torch.
# ---------------------------------------------------------------------------------------------

CSP_NEIGHBOURS = 12
"""``centro/atom fcc``: the 12 nearest neighbours, 6 = 12/2 smallest pair sums."""
CSP_CUTOFF_A = 6.5
"""LAMMPS takes the CSP neighbours among those within the pair cutoff (6.5 Å for Mendelev's
``Al_mm.eam.fs``) and reports 0 for an atom with fewer than 12 there. Only consulted when some
atom has fewer than 12 neighbours within :data:`Q_CUTOFF_A`."""
CNA_MAX_NEAR = 14
"""CNA only classifies atoms with exactly 12 (FCC, HCP, ICO) or 14 (BCC) neighbours."""
CNA_UNKNOWN, CNA_FCC, CNA_HCP, CNA_BCC, CNA_ICO, CNA_OTHER = range(6)


def _neighbour_table(
    pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor | None, cutoff: float, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each atom's ``k`` nearest neighbours within ``cutoff``, as a dense padded table.

    Returns:
        vec: (N, k, 3) vectors centre → neighbour image, Å, sorted by distance; zero padding.
        edge_dst: (E,) centre index of every edge within ``cutoff`` (for counting).
        edge_dist2: (E,) squared length of every such edge, Å².
    """
    import torch

    from .graph import edge_vectors, neighbour_list

    n = pos.shape[0]
    edge_index, shifts = neighbour_list(pos, cell, cutoff, batch)
    vec = edge_vectors(pos, cell, edge_index, shifts, batch)
    dist2 = (vec * vec).sum(-1)
    dst = edge_index[1]
    # Sort by centre, then by distance, with two stable sorts (a combined float key
    # dst * BIG + d would lose the distance digits for large N).
    order = torch.argsort(dist2, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]
    dst_s, vec_s = dst[order], vec[order]
    # Rank of every edge within its centre's run of edges = slot in the dense table.
    counts = torch.bincount(dst, minlength=n)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(dst_s.shape[0], device=pos.device) - start[dst_s]
    keep = rank < k
    table = pos.new_zeros(n, k, 3)
    table[dst_s[keep], rank[keep]] = vec_s[keep]
    return table, dst, dist2


def _count_within(edge_dst: torch.Tensor, edge_dist2: torch.Tensor, n: int, cutoff: float):
    """(N,) long: number of edges per centre strictly shorter than ``cutoff`` (as LAMMPS:
    ``rsq < cutsq``)."""
    import torch

    return torch.bincount(edge_dst[edge_dist2 < cutoff * cutoff], minlength=n)


def centro_symmetry_from_table(vec: torch.Tensor, n_within: torch.Tensor) -> torch.Tensor:
    """CSP from the 12 nearest neighbour vectors, Å².

    Args:
        vec: (N, ≥12, 3) neighbour vectors sorted by distance, Å.
        n_within: (N,) neighbours inside the CSP cutoff; atoms with fewer than 12 get 0.

    Returns:
        (N,) sum of the 6 smallest |R_a + R_b|² over the 66 pairs a < b of the 12 nearest.
    """
    import torch

    r = vec[:, :CSP_NEIGHBOURS]
    a, b = torch.triu_indices(CSP_NEIGHBOURS, CSP_NEIGHBOURS, offset=1, device=vec.device)
    pair = r[:, a] + r[:, b]  # (N, 66, 3)
    pair2 = (pair * pair).sum(-1)
    csp = pair2.topk(CSP_NEIGHBOURS // 2, dim=1, largest=False).values.sum(1)
    return torch.where(n_within >= CSP_NEIGHBOURS, csp, torch.zeros_like(csp))


def _legendre(l: int, x: torch.Tensor) -> torch.Tensor:
    """Legendre polynomial P_l(x) for l = 4 or 6."""
    x2 = x * x
    if l == 4:
        return (35.0 * x2 * x2 - 30.0 * x2 + 3.0) / 8.0
    if l == 6:
        return (((231.0 * x2 - 315.0) * x2 + 105.0) * x2 - 5.0) / 16.0
    raise ValueError(f"degree l={l}: expected 4 or 6")


def steinhardt_from_table(
    vec: torch.Tensor, n_within: torch.Tensor, degrees: tuple[int, ...] = (4, 6)
) -> torch.Tensor:
    """Steinhardt Q_l of the 12 nearest neighbours (dimensionless), LAMMPS' definition.

    Q_l = sqrt(4π/(2l+1) Σ_m |q_lm|²) with q_lm the mean of Y_lm(r̂) over the neighbours. By the
    spherical-harmonic addition theorem Σ_m Y_lm(a) Y_lm*(b) = (2l+1)/(4π) P_l(a·b), so
    Q_l² = mean over all neighbour pairs (a, b), a = b included, of P_l(r̂_a · r̂_b): exact, basis
    free, and a (N, 12, 12) batched matmul.

    Args:
        vec: (N, ≥12, 3) neighbour vectors sorted by distance, Å.
        n_within: (N,) neighbours inside the Q cutoff; LAMMPS sets Q_l = 0 below 12.

    Returns:
        (N, len(degrees)).
    """
    import torch

    r = vec[:, :Q_NEIGHBOURS]
    u = r / r.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (u @ u.transpose(1, 2)).clamp(-1.0, 1.0)  # (N, 12, 12)
    # clamp: rounding can make a tiny Q_l² negative
    q = torch.stack([_legendre(l, cos).mean((1, 2)).clamp_min(0.0).sqrt() for l in degrees], 1)
    return torch.where((n_within >= Q_NEIGHBOURS)[:, None], q, torch.zeros_like(q))


def cna_from_table(vec: torch.Tensor, n_within: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Conventional CNA labels (0 unknown, 1 FCC, 2 HCP, 3 BCC, 4 ICO, 5 other), LAMMPS rules.

    For atom i with exactly 12 or 14 neighbours within ``cutoff`` and each neighbour j: the
    common neighbours are i's neighbours within ``cutoff`` of j; count them (ncommon), the bonds
    among them (nbonds, pairs closer than ``cutoff``), and the most and fewest bonds any one
    common neighbour has (maxbond, minbond). LAMMPS' signatures, (ncommon, nbonds, maxbond,
    minbond): FCC = 12 × (4,2,1,1); HCP = 6 × (4,2,1,1) + 6 × (4,2,2,0); ICO = 12 × (5,5,2,2);
    BCC (14 neighbours) = 6 × (4,4,2,2) + 8 × (6,6,2,2); anything else is OTHER, including every
    atom without 12 or 14 neighbours. UNKNOWN is only for atoms outside the compute group, so it
    never appears here.

    Everything is taken in i's frame from i's own neighbour vectors, like LAMMPS does for ghost
    neighbours, so atoms are told apart by image as well as index (correct in small boxes).

    Args:
        vec: (N, ≥14, 3) neighbour vectors sorted by distance, Å.
        n_within: (N,) neighbours strictly inside ``cutoff``.
        cutoff: CNA cutoff, Å.

    Returns:
        (N,) long labels.
    """
    import torch

    k = CNA_MAX_NEAR
    r = vec[:, :k]
    slot = torch.arange(k, device=vec.device)
    valid = slot[None, :] < n_within[:, None]  # (N, k): neighbour a is a CNA neighbour
    diff = r[:, :, None, :] - r[:, None, :, :]
    bonded = (diff * diff).sum(-1) < cutoff * cutoff  # (N, k, k)
    bonded &= valid[:, :, None] & valid[:, None, :]
    bonded &= ~torch.eye(k, dtype=torch.bool, device=vec.device)
    bond = bonded.to(vec.dtype)
    # Common neighbours of (i, a): b with bond[a, b]. Bonds that common neighbour b has to the
    # other common neighbours: Σ_c bond[a, c] bond[b, c] = (bond @ bond)[a, b]. Values are
    # small integers, exact in floating point.
    per_common = bond @ bond  # (N, k, k)
    ncommon = bonded.sum(-1)
    nbonds = torch.where(bonded, per_common, 0).sum(-1).round().long() // 2
    big = torch.tensor(k + 1, dtype=vec.dtype, device=vec.device)
    maxbond = torch.where(bonded, per_common, -1.0).amax(-1).round().long()
    minbond = torch.where(bonded, per_common, big).amin(-1).round().long()

    def count(nc: int, nb: int, mx: int, mn: int) -> torch.Tensor:
        hit = (ncommon == nc) & (nbonds == nb) & (maxbond == mx) & (minbond == mn) & valid
        return hit.sum(-1)

    n_fcc, n_hcp, n_ico = count(4, 2, 1, 1), count(4, 2, 2, 0), count(5, 5, 2, 2)
    n_bcc4, n_bcc6 = count(4, 4, 2, 2), count(6, 6, 2, 2)
    is12, is14 = n_within == 12, n_within == 14
    label = torch.full_like(n_within, CNA_OTHER)
    # LAMMPS checks FCC, then HCP, then ICO; the signatures exclude each other anyway.
    label = torch.where(is12 & (n_ico == 12), CNA_ICO, label)
    label = torch.where(is12 & (n_fcc == 6) & (n_hcp == 6), CNA_HCP, label)
    label = torch.where(is12 & (n_fcc == 12), CNA_FCC, label)
    label = torch.where(is14 & (n_bcc4 == 6) & (n_bcc6 == 8), CNA_BCC, label)
    return label


def _prepare(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor | None):
    """Detached float64 copies (LAMMPS works in double, and the Q_l² sums cancel) and one
    cell per system."""
    import torch

    pos64 = pos.detach().to(torch.float64)
    cell64 = cell.detach().to(device=pos.device, dtype=torch.float64)
    if batch is not None and cell64.dim() == 2:
        n_graphs = int(batch.max()) + 1 if batch.numel() else 1
        cell64 = cell64.expand(n_graphs, 3, 3)
    return pos64, cell64


def compute_descriptors(
    pos: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor | None = None,
    material: Material = ALUMINIUM,
) -> torch.Tensor:
    """Per-atom structural descriptors matching the LAMMPS computes of this module.

    Not differentiable (inputs are detached; the labels and counts are discrete anyway).

    Args:
        pos: (N, 3) positions, Å (wrapped or not).
        cell: (3, 3) or (B, 3, 3) periodic cells, rows are lattice vectors, Å.
        batch: (N,) sorted graph index of every atom for several systems; ``None`` for one.
        material: sets the CNA cutoff (:func:`cna_cutoff_A`).

    Returns:
        (N, 5) tensor, columns in :data:`DESCRIPTOR_NAMES` order: CSP (Å²), CNA label (0-5 as
        a float), Q4, Q6, CN (count); same device and dtype as ``pos``. Computed in float64.
    """
    import torch

    n = pos.shape[0]
    if n == 0:
        return pos.new_zeros(0, len(DESCRIPTOR_NAMES))
    p, c = _prepare(pos, cell, batch)
    # One neighbour list (4.5 Å, the largest cutoff) serves all five descriptors; its first
    # 14 slots per atom hold the 12 nearest (CSP, Q) and the 12 or 14 CNA neighbours.
    k = max(CSP_NEIGHBOURS, Q_NEIGHBOURS, CNA_MAX_NEAR)
    vec, dst, d2 = _neighbour_table(p, c, batch, Q_CUTOFF_A, k)
    n_q = _count_within(dst, d2, n, Q_CUTOFF_A)
    cna_cut = cna_cutoff_A(material)
    n_cna = _count_within(dst, d2, n, cna_cut)
    cn = _count_within(dst, d2, n, CN_CUTOFF_A)
    q = steinhardt_from_table(vec, n_q)
    cna = cna_from_table(vec, n_cna, cna_cut)
    if bool((n_q >= CSP_NEIGHBOURS).all()):
        csp = centro_symmetry_from_table(vec, n_q)
    else:
        # Some atom lacks 12 neighbours within 4.5 Å (surface, gas): LAMMPS still looks for
        # them out to the pair cutoff, so take a second, wider list.
        vec, dst, d2 = _neighbour_table(p, c, batch, CSP_CUTOFF_A, CSP_NEIGHBOURS)
        csp = centro_symmetry_from_table(vec, _count_within(dst, d2, n, CSP_CUTOFF_A))
    out = torch.stack([csp, cna.to(p.dtype), q[:, 0], q[:, 1], cn.to(p.dtype)], dim=1)
    return out.to(pos.dtype)


# Single-descriptor conveniences: the shared neighbour list dominates the cost, so they simply
# take a column of compute_descriptors.


def centro_symmetry(pos, cell, batch=None) -> torch.Tensor:
    """(N,) CSP, Å² (``compute centro/atom fcc``)."""
    return compute_descriptors(pos, cell, batch)[:, 0]


def cna_labels(pos, cell, batch=None) -> torch.Tensor:
    """(N,) long CNA labels (``compute cna/atom 3.4587``); see :func:`cna_from_table`."""
    return compute_descriptors(pos, cell, batch)[:, 1].long()


def steinhardt(pos, cell, batch=None) -> torch.Tensor:
    """(N, 2) [Q4, Q6] (``compute orientorder/atom nnn 12 degrees 2 4 6 cutoff 4.5``)."""
    return compute_descriptors(pos, cell, batch)[:, 2:4]


def coordination(pos, cell, batch=None) -> torch.Tensor:
    """(N,) long number of neighbours closer than 3.5 Å (``compute coord/atom cutoff 3.5``)."""
    return compute_descriptors(pos, cell, batch)[:, 4].long()

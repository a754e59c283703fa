"""Periodic graphs: neighbour lists (vesin), differentiable edge vectors, PyG batches.

Edge convention (PyG ``source_to_target``): ``edge_index = [src, dst]``; a message flows from
the neighbour ``j = src`` to the centre ``i = dst`` and the edge vector is
``r_ij = pos[j] - pos[i] + shift_ij @ cell`` (Å), the vector from the centre to the neighbour's
periodic image. ``shifts`` are integer cell multiples stored as floats so that the vector stays
differentiable with respect to positions *and* cell.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Batch, Data

NODE_FIELDS = ("pos", "vel", "species", "mass")


def perpendicular_widths(cell: torch.Tensor | np.ndarray) -> np.ndarray:
    """Distances between opposite faces of a cell (rows are lattice vectors), Å, shape (3,)."""
    c = np.asarray(cell.detach().cpu() if isinstance(cell, torch.Tensor) else cell, float)
    volume = abs(np.linalg.det(c))
    cross = [np.cross(c[1], c[2]), np.cross(c[2], c[0]), np.cross(c[0], c[1])]
    return np.array([volume / np.linalg.norm(x) for x in cross])


def check_box(cell, cutoff: float, where: str = "input", cutoff_source: str = "") -> None:
    """Refuse a periodic box thinner than twice the cutoff: an atom would see itself.

    The ``ValueError`` names ``where``, the field ``cell``, its widths and the cutoff it was
    checked against (``cutoff_source`` says whose, e.g. "the model's cutoff").
    """
    widths = perpendicular_widths(cell)
    if np.any(widths < 2.0 * cutoff):
        whose = f" ({cutoff_source})" if cutoff_source else ""
        raise ValueError(
            f"{where}: field 'cell' has perpendicular widths {np.round(widths, 3).tolist()} Å; "
            f"expected every width ≥ 2 × cutoff = 2 × {cutoff:.4g} Å{whose} = {2 * cutoff:.3f} Å "
            "(use a larger supercell, e.g. more repeats of the unit cell along the thin axes)"
        )


def _vesin_nl(cutoff: float):
    from vesin_torch import NeighborList

    return NeighborList(cutoff=float(cutoff), full_list=True)


def neighbour_list(
    pos: torch.Tensor,
    cell: torch.Tensor,
    cutoff: float,
    batch: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full periodic neighbour list of one or several systems.

    Args:
        pos: (N, 3) positions, Å (need not be wrapped).
        cell: (3, 3) or (B, 3, 3) cells, rows are lattice vectors, Å.
        cutoff: radius, Å.
        batch: (N,) graph index of every atom, sorted; ``None`` for one system.

    Returns:
        edge_index (2, E) long ``[src, dst]`` with global atom indices, and shifts (E, 3) in
        units of the cell vectors (float, same dtype as ``pos``).
    """
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    if batch is None:
        bounds = [0, pos.shape[0]]
    else:
        counts = torch.bincount(batch, minlength=cell.shape[0]).tolist()
        bounds = [0] + np.cumsum(counts).tolist()
    nl = _vesin_nl(cutoff)
    srcs, dsts, shs = [], [], []
    with torch.no_grad():
        # One call per system (a few per batch), never per atom.
        for g in range(cell.shape[0]):
            lo, hi = bounds[g], bounds[g + 1]
            p = pos[lo:hi].detach()
            box = cell[g].detach().to(p.dtype)
            i, j, s = nl.compute(points=p, box=box, periodic=True, quantities="ijS")
            dsts.append(i.to(torch.long) + lo)
            srcs.append(j.to(torch.long) + lo)
            shs.append(s)
    edge_index = torch.stack([torch.cat(srcs), torch.cat(dsts)]).to(pos.device)
    shifts = torch.cat(shs).to(device=pos.device, dtype=pos.dtype)
    return edge_index, shifts


def edge_vectors(
    pos: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    shifts: torch.Tensor,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    """Edge vectors r_ij = pos[j] - pos[i] + shift @ cell, (E, 3) Å, differentiable."""
    src, dst = edge_index
    if cell.dim() == 2:
        offset = shifts @ cell
    else:
        graph = batch[dst] if batch is not None else torch.zeros_like(dst)
        offset = torch.einsum("ek,ekl->el", shifts, cell[graph])
    return pos[src] - pos[dst] + offset


def node_major_edges(
    edge_index: torch.Tensor, shifts: torch.Tensor, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The edge list laid out as a dense (centre, slot) table: every centre atom gets
    ``M`` = the largest number of neighbours of any atom slots, its own edges first (in the
    given order), the rest padding. A sum over neighbours is then a reduction over the slot
    axis, which a compiler fuses with the message it sums (no per-edge message array written
    and scattered back: at 4,000 atoms that array is ~200 MB per layer).

    Args:
        edge_index: (2, E) ``[src, dst]``; shifts: (E, 3) cell multiples; num_nodes: N.

    Returns:
        edge_index (2, N, M), shifts (N, M, 3) and ``real`` (N, M) bool. A padding slot of
        centre i is the edge i → i with zero shift and ``real`` False: the caller must give it
        a length beyond the cutoff (where the envelope makes its message exactly 0).
    """
    src, dst = edge_index[0], edge_index[1]
    device = dst.device
    order = torch.argsort(dst, stable=True)
    src, dst, shifts = src[order], dst[order], shifts[order]
    counts = torch.bincount(dst, minlength=num_nodes)
    slots = max(int(counts.max()), 1) if dst.numel() else 1
    first = torch.cumsum(counts, 0) - counts
    flat = dst * slots + (torch.arange(dst.numel(), device=device) - first[dst])
    nodes = torch.arange(num_nodes, device=device).repeat_interleave(slots)
    table_src = nodes.clone()
    table_src[flat] = src
    table_shifts = shifts.new_zeros(num_nodes * slots, 3)
    table_shifts[flat] = shifts
    real = torch.zeros(num_nodes * slots, dtype=torch.bool, device=device)
    real[flat] = True
    table = torch.stack([table_src, nodes]).reshape(2, num_nodes, slots)
    return table, table_shifts.reshape(num_nodes, slots, 3), real.reshape(num_nodes, slots)


class VerletList:
    """A neighbour list at ``cutoff + skin``, reused while it is exact (Verlet's skin list).

    :meth:`build` computes a full periodic list (:func:`neighbour_list`) at ``cutoff + skin``
    from reference positions; :meth:`edges` returns the pairs closer than ``cutoff`` at new
    positions by filtering that list with edge vectors recomputed from the new positions and the
    stored cell shifts (differentiable in the positions). This equals a fresh list at
    ``cutoff`` as long as no atom moved more than ``skin / 2`` since the build (then a pair now
    closer than ``cutoff`` was closer than ``cutoff + skin``); :meth:`edges` rebuilds from the
    current positions when the largest displacement exceeds ``skin / 2``. The cell must stay
    the one given to :meth:`build`. Positions may be unwrapped (vesin handles atoms outside the
    cell); displacements are measured on the positions as given, so keep them continuous
    (unwrapped) between builds.

    The list is sorted by centre atom, then neighbour, so gathers and scatters over the centre
    read contiguous segments. ``builds`` counts the lists computed (an adopted precomputed list
    is not counted); ``version`` counts every list held (computed or adopted), so that a caller
    can tell when per-edge quantities of the list must be recomputed.

    Args:
        cutoff: radius of the pairs :meth:`edges` returns, Å.
        skin: extra radius of the stored list, Å (≥ 0; 0 rebuilds whenever an atom moves).
    """

    def __init__(self, cutoff: float, skin: float):
        if skin < 0:
            raise ValueError(f"VerletList: field 'skin' is {skin} Å; expected ≥ 0")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.builds = 0
        self.version = 0
        self.src = self.dst = self.shifts = self.offset = self.pos_ref = None
        self.cell = self.batch = None

    @property
    def list_cutoff(self) -> float:
        """Radius of the stored list, ``cutoff + skin``, Å."""
        return self.cutoff + self.skin

    def build(
        self,
        pos: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor | None = None,
        edge_index: torch.Tensor | None = None,
        shifts: torch.Tensor | None = None,
    ) -> VerletList:
        """(Re)build at reference positions ``pos`` (N, 3) Å in ``cell`` ((3, 3) or (B, 3, 3),
        rows are lattice vectors, Å) with graph index ``batch`` (N,); or adopt a precomputed list
        ``edge_index`` (2, E), ``shifts`` (E, 3) that contains every pair within
        ``cutoff + skin`` at ``pos``. Returns ``self``."""
        cells = cell if cell.dim() == 3 else cell.unsqueeze(0)
        if batch is None:
            batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
        if edge_index is None:
            edge_index, shifts = neighbour_list(pos, cells, self.list_cutoff, batch)
            self.builds += 1
        self.version += 1
        n = pos.shape[0]
        order = torch.argsort(edge_index[1] * n + edge_index[0])
        self.src, self.dst = edge_index[0][order], edge_index[1][order]
        self.shifts = shifts[order].to(pos.dtype)
        self.offset = torch.einsum("ek,ekl->el", self.shifts, cells[batch[self.dst]].to(pos.dtype))
        self.pos_ref = pos.detach().clone()
        self.cell, self.batch = cells, batch
        return self

    def __getstate__(self) -> dict:
        """Pickled small (a rollout's restart file): the reference positions, cell, batch and
        counters, not the pairs; unpickling finds them again from the same reference
        positions, so the list (and the strides until its next rebuild) are the same."""
        return {**self.__dict__, "src": None, "dst": None, "shifts": None, "offset": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.pos_ref is not None:
            builds, version = self.builds, self.version
            self.build(self.pos_ref, self.cell, self.batch)
            self.builds, self.version = builds, version

    @classmethod
    def reuse(
        cls,
        held: VerletList | None,
        cutoff: float,
        skin: float,
        pos: torch.Tensor,
        cell: torch.Tensor,
        batch: torch.Tensor,
    ) -> VerletList:
        """``held`` where it is a list for these atoms, this cell and ``cutoff`` (it then
        rebuilds itself in :meth:`edges` as needed), else a new one built at ``pos``."""
        if (
            held is not None
            and held.cutoff == float(cutoff)
            and held.pos_ref.shape == pos.shape
            and torch.equal(held.cell, cell if cell.dim() == 3 else cell.unsqueeze(0))
            and torch.equal(held.batch, batch)
        ):
            return held
        return cls(cutoff, skin).build(pos, cell, batch)

    def wrapped_edges(
        self, unwrapped: torch.Tensor, wrapped: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs closer than ``cutoff`` and their cell shifts for the ``wrapped`` positions
        (N, 3) Å, from the list kept on the continuous ``unwrapped`` ones: ``edge_index``
        (2, E) and ``shifts`` (E, 3) whole cells (what :func:`neighbour_list` would return
        for ``wrapped``, found without a search on most calls)."""
        edge_index, _, keep = self.edges(unwrapped)
        # the list's shifts are for the unwrapped positions; for the wrapped ones add the
        # whole cells between them, n_src − n_dst (unwrapped = wrapped + n · cell)
        inv = torch.linalg.inv(self.cell)[self.batch]
        whole = torch.round(torch.einsum("nk,nkl->nl", unwrapped - wrapped, inv))
        return edge_index, self.shifts[keep] + whole[edge_index[0]] - whole[edge_index[1]]

    def max_displacement(self, pos: torch.Tensor) -> float:
        """Largest distance any atom moved since the last build, Å."""
        if self.pos_ref is None:
            raise RuntimeError("VerletList: call build() first")
        return float((pos.detach() - self.pos_ref).norm(dim=-1).max()) if len(pos) else 0.0

    def edges(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pairs closer than ``cutoff`` at positions ``pos`` (N, 3) Å, rebuilding first if an
        atom moved more than ``skin / 2`` since the last build.

        Returns ``edge_index`` (2, E) ``[src, dst]``, the edge vectors r_ij (E, 3) Å
        (differentiable in ``pos``) and ``keep`` (E,), the indices of these pairs in the stored
        list (``self.src[keep]`` …, ``self.shifts[keep]`` are their cell shifts).
        """
        if self.max_displacement(pos) > 0.5 * self.skin:
            self.build(pos, self.cell, self.batch)
        # index_select, not fancy indexing, and no reduction over a last axis of 3: each
        # several times slower on a CPU at 10⁵ edges, and this runs every force evaluation
        vec = pos.index_select(0, self.src) - pos.index_select(0, self.dst) + self.offset
        keep = torch.nonzero(squared_norm(vec.detach()) < self.cutoff**2).squeeze(-1)
        edge_index = torch.stack([self.src.index_select(0, keep), self.dst.index_select(0, keep)])
        return edge_index, vec.index_select(0, keep), keep


def squared_norm(vectors: torch.Tensor) -> torch.Tensor:
    """|v|² of (E, 3) vectors, (E,): three columns, not a reduction over the last axis (which
    runs several times slower on a CPU)."""
    x, y, z = vectors.unbind(-1)
    return x * x + y * y + z * z


def wrap_positions(pos: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor | None = None):
    """Positions wrapped into [0, 1) fractional coordinates of their cell, (N, 3) Å."""
    cells = cell if cell.dim() == 3 else cell.unsqueeze(0)
    per_atom = cells[batch] if batch is not None else cells[0].expand(pos.shape[0], 3, 3)
    frac = torch.linalg.solve(per_atom.transpose(1, 2), pos.unsqueeze(-1)).squeeze(-1)
    frac = frac - torch.floor(frac)
    return torch.einsum("nk,nkl->nl", frac, per_atom)


def make_data(
    positions,
    velocities,
    cell,
    species,
    masses,
    dt_fs: float,
    temperature_K: float,
    descriptors=None,
    dtype: torch.dtype = torch.float32,
    **extra,
) -> Data:
    """One system as a PyG ``Data`` object (the state every model reads).

    Node fields: ``pos`` (N, 3) Å, wrapped into the cell; ``vel`` (N, 3) Å/ps; ``species``
    (N,) atomic numbers; ``mass`` (N,) amu; optional ``descriptors`` (N, 5) =
    [CSP, CNA label, Q4, Q6, CN]. Graph fields: ``cell`` (1, 3, 3) Å, ``dt_fs`` (1,),
    ``temperature_K`` (1,). Extra keyword tensors (targets, forces) are attached as given,
    converted to ``dtype`` when floating.
    """

    def t(x, dt=dtype):
        return torch.as_tensor(np.asarray(x), dtype=dt)

    cell_t = t(cell).reshape(1, 3, 3)
    pos = wrap_positions(t(positions), cell_t)
    data = Data(
        pos=pos,
        vel=t(velocities),
        species=t(species, torch.long),
        mass=t(masses),
        cell=cell_t,
        dt_fs=t([dt_fs]),
        temperature_K=t([temperature_K]),
        num_nodes=pos.shape[0],
    )
    if descriptors is not None:
        data.descriptors = t(descriptors)
    for key, value in extra.items():
        arr = np.asarray(value)
        data[key] = t(arr) if np.issubdtype(arr.dtype, np.floating) else t(arr, torch.long)
    return data


def add_edges(data: Data | Batch, cutoff: float) -> Data | Batch:
    """Attach ``edge_index`` and ``shifts`` for ``cutoff`` (Å) to a Data or Batch, in place."""
    batch = getattr(data, "batch", None)
    data.edge_index, data.shifts = neighbour_list(data.pos, data.cell, cutoff, batch)
    data.cutoff = cutoff
    return data


def collate(items: list[Data]) -> Batch:
    return Batch.from_data_list(items)


__all__ = [
    "VerletList",
    "add_edges",
    "check_box",
    "collate",
    "edge_vectors",
    "make_data",
    "neighbour_list",
    "perpendicular_widths",
    "wrap_positions",
]

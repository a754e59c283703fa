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


def check_box(cell, cutoff: float, where: str = "input") -> None:
    """Refuse a periodic box thinner than twice the cutoff: an atom would see itself."""
    widths = perpendicular_widths(cell)
    if np.any(widths < 2.0 * cutoff):
        raise ValueError(
            f"{where}: field 'cell' has perpendicular widths {np.round(widths, 3).tolist()} Å; "
            f"expected every width ≥ 2 × cutoff = {2 * cutoff:.3f} Å "
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
    "add_edges",
    "check_box",
    "collate",
    "edge_vectors",
    "make_data",
    "neighbour_list",
    "perpendicular_widths",
    "wrap_positions",
]


class VerletList:
    """A neighbour list with a skin, reused exactly while the atoms move little (Verlet).

    Built at reference positions with the cutoff ``cutoff + skin``; :meth:`edges` returns the
    pairs closer than ``cutoff`` at new positions by filtering it, which is exact as long as
    no atom has moved more than ``skin / 2`` since the build (a pair now inside ``cutoff`` was
    then inside ``cutoff + skin``). Beyond that it rebuilds from the current positions.

    Args:
        cell: (B, 3, 3) Å, rows are lattice vectors; graph: (N,) system index of every atom.
        cutoff, skin: Å. ``on_build(list)``: called after every build (per-edge features that
            depend only on the list, for example). ``builds`` counts the neighbour searches
            (a list handed in as ``edge_index`` / ``shifts`` is not one).

    After a build: ``src``, ``dst`` (E,) sorted by centre atom then neighbour (contiguous
    segments for gathers and scatters), ``offset`` (E, 3) Å the periodic image shift of each
    pair, ``pos_ref`` (N, 3) the positions it was built at.
    """

    def __init__(
        self,
        pos_ref: torch.Tensor,
        cell: torch.Tensor,
        graph: torch.Tensor,
        cutoff: float,
        skin: float,
        edge_index: torch.Tensor | None = None,
        shifts: torch.Tensor | None = None,
        on_build=None,
    ):
        self.cell, self.graph = cell, graph
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.on_build = on_build
        self.builds = 0
        self.build(pos_ref, edge_index, shifts)

    def build(self, pos_ref, edge_index=None, shifts=None) -> None:
        if edge_index is None:
            edge_index, shifts = neighbour_list(
                pos_ref, self.cell, self.cutoff + self.skin, self.graph
            )
            self.builds += 1
        n = pos_ref.shape[0]
        order = torch.argsort(edge_index[1] * n + edge_index[0])
        self.src, self.dst = edge_index[:, order]
        shifts = shifts[order].to(pos_ref.dtype)
        self.offset = torch.einsum("ek,ekl->el", shifts, self.cell[self.graph[self.dst]])
        self.pos_ref = pos_ref.detach()
        if self.on_build is not None:
            self.on_build(self)

    def edges(self, pos: torch.Tensor):
        """Pairs with |r_ij| < cutoff at ``pos``: (src, dst, r_ij (E′, 3) Å, kept-edge index)."""
        if float((pos.detach() - self.pos_ref).norm(dim=-1).max()) > 0.5 * self.skin:
            self.build(pos)
        vec = pos[self.src] - pos[self.dst] + self.offset
        dist2 = (vec.detach() ** 2).sum(-1)
        keep = torch.nonzero(dist2 < self.cutoff**2).squeeze(-1)
        return self.src[keep], self.dst[keep], vec[keep], keep

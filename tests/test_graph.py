import ase.build
import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list
from torch_geometric.data import Batch

from equignnmd.graph import (
    VerletList,
    check_box,
    edge_vectors,
    make_data,
    neighbour_list,
    node_major_edges,
    wrap_positions,
)
from equignnmd.models.paper import PAPER_CUTOFF_A


def random_triclinic(seed: int, reps=(4, 4, 4)):
    rng = np.random.default_rng(seed)
    atoms = ase.build.bulk("Al", "fcc", a=4.05, cubic=True).repeat(reps)
    cell = atoms.cell.array + rng.normal(scale=0.6, size=(3, 3))
    atoms.set_cell(cell, scale_atoms=True)
    atoms.rattle(0.15, seed=seed)
    atoms.positions += rng.normal(scale=3.0, size=3)  # some atoms outside the cell
    return atoms


def edge_set(i, j, shifts):
    return {(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, shifts)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edges_equal_ase_on_triclinic_boxes(seed):
    atoms = random_triclinic(seed)
    cutoff = 5.0
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)
    edge_index, shifts = neighbour_list(pos, cell, cutoff)
    src, dst = edge_index
    ai, aj, aS = neighbor_list("ijS", atoms, cutoff)
    ours = edge_set(dst, src, shifts.round().long())
    theirs = edge_set(ai, aj, aS)
    assert len(ours) == len(edge_index[0])  # no duplicates
    assert ours == theirs
    vec = edge_vectors(pos, cell, edge_index, shifts)
    assert torch.all(vec.norm(dim=1) < cutoff)


def test_edge_vectors_differentiable_in_positions_and_cell():
    atoms = random_triclinic(3)
    pos = torch.tensor(atoms.positions, requires_grad=True)
    cell = torch.tensor(atoms.cell.array, requires_grad=True)
    edge_index, shifts = neighbour_list(pos, cell, 4.0)
    energy = (edge_vectors(pos, cell, edge_index, shifts).norm(dim=1) ** 2).sum()
    energy.backward()
    # analytic: d/dcell sum |r_ij|^2 = sum 2 shift_ij^T r_ij ; d/dpos_i = -4 sum_j r_ij (full list)
    vec = edge_vectors(pos.detach(), cell.detach(), edge_index, shifts)
    dcell = 2 * shifts.T @ vec
    assert torch.allclose(cell.grad, dcell, atol=1e-8)
    dpos = torch.zeros_like(pos).index_add_(0, edge_index[1], -4 * vec)
    assert torch.allclose(pos.grad, dpos, atol=1e-8)


def test_batched_graphs_match_single():
    a, b = random_triclinic(4), random_triclinic(5, reps=(5, 4, 4))
    datas = [
        make_data(
            x.positions,
            np.zeros((len(x), 3)),
            x.cell.array,
            x.numbers,
            x.get_masses(),
            10.0,
            300.0,
            dtype=torch.float64,
        )
        for x in (a, b)
    ]
    batch = Batch.from_data_list(datas)
    ei, sh = neighbour_list(batch.pos, batch.cell, 5.0, batch.batch)
    vec = edge_vectors(batch.pos, batch.cell, ei, sh, batch.batch)
    assert torch.all(batch.batch[ei[0]] == batch.batch[ei[1]])
    n_a = len(a)
    for k, d in enumerate(datas):
        e1, s1 = neighbour_list(d.pos, d.cell[0], 5.0)
        v1 = edge_vectors(d.pos, d.cell[0], e1, s1)
        mask = batch.batch[ei[1]] == k
        assert mask.sum() == e1.shape[1]
        got = torch.sort(vec[mask].norm(dim=1)).values
        assert torch.allclose(got, torch.sort(v1.norm(dim=1)).values)
    assert n_a == 256


def test_wrap_positions_inside_cell():
    atoms = random_triclinic(6)
    pos = wrap_positions(torch.tensor(atoms.positions), torch.tensor(atoms.cell.array))
    frac = np.linalg.solve(atoms.cell.array.T, pos.numpy().T).T
    assert frac.min() >= 0 and frac.max() < 1
    atoms.wrap()
    assert np.allclose(np.sort(pos.numpy(), axis=0), np.sort(atoms.positions, axis=0))


def test_box_too_small_is_a_clear_error():
    small = ase.build.bulk("Al", "fcc", a=4.05, cubic=True).repeat((3, 3, 3))
    with pytest.raises(ValueError, match="cell.*2 × cutoff"):
        check_box(small.cell.array, PAPER_CUTOFF_A, where="test.xyz")
    check_box(small.repeat((2, 2, 2)).cell.array, PAPER_CUTOFF_A)


# ----------------------------------------------------------------------------- Verlet list
def edge_keys(edge_index, vec):
    """Rows (src, dst, r_ij in 1e-6 Å) sorted: equal iff the edge sets (with images) are equal."""
    keys = torch.cat([edge_index.T, torch.round(vec * 1e6).long()], dim=1)
    unique = torch.unique(keys, dim=0)
    assert unique.shape == keys.shape, "duplicate edges"
    return unique


def two_triclinic_systems():
    """Two triclinic boxes (atoms partly outside their cells) as one batch: pos, cells, batch."""
    systems = [random_triclinic(s) for s in (7, 8)]
    pos = torch.tensor(np.concatenate([a.positions for a in systems]))
    cells = torch.tensor(np.stack([a.cell.array for a in systems]))
    batch = torch.cat([torch.full((len(a),), g) for g, a in enumerate(systems)])
    return pos, cells, batch


def fresh_keys(pos, cells, batch, cutoff):
    ei, shifts = neighbour_list(pos, cells, cutoff, batch)
    return edge_keys(ei, edge_vectors(pos, cells, ei, shifts, batch))


def test_verlet_list_reuse_is_exact_and_rebuilds_past_half_the_skin():
    cutoff, skin = 5.0, 0.8
    pos0, cells, batch = two_triclinic_systems()
    nl = VerletList(cutoff, skin).build(pos0, cells, batch)
    assert nl.builds == 1 and nl.list_cutoff == cutoff + skin
    rng = np.random.default_rng(3)
    direction = rng.normal(size=pos0.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    speed = rng.uniform(0.3, 1.0, size=(len(pos0), 1)) * 0.1  # Å per step
    pos, reused = pos0.clone(), 0
    for step in range(8):  # every atom drifts ≤ 0.1 Å per step (plus a little noise)
        move = speed * direction + rng.normal(scale=0.005, size=pos0.shape)
        pos = pos + torch.tensor(move)
        moved, builds = nl.max_displacement(pos), nl.builds
        edge_index, vec, keep = nl.edges(pos)
        # reused up to skin/2 = 0.4 Å, rebuilt above it: either way the fresh list's edges
        assert nl.builds == builds + (moved > 0.5 * skin), (step, moved)
        reused += moved <= 0.5 * skin
        assert edge_keys(edge_index, vec).equal(fresh_keys(pos, cells, batch, cutoff)), step
        assert torch.equal(edge_index, torch.stack([nl.src[keep], nl.dst[keep]]))
        # sorted by centre atom: contiguous segments for scatters
        assert bool((edge_index[1][1:] >= edge_index[1][:-1]).all())
    assert reused >= 5 and nl.builds >= 2, (reused, nl.builds)


def test_verlet_list_adopts_a_given_list_and_its_vectors_are_differentiable():
    cutoff, skin = 4.5, 1.0
    pos0, cells, batch = two_triclinic_systems()
    ei, shifts = neighbour_list(pos0, cells, cutoff + skin, batch)
    nl = VerletList(cutoff, skin).build(pos0, cells, batch, ei, shifts)
    assert nl.builds == 0 and nl.version == 1  # adopted, not computed
    pos = pos0 + 0.3 * torch.randn(pos0.shape, generator=torch.Generator().manual_seed(0))
    pos = pos.requires_grad_(True)
    edge_index, vec, _ = nl.edges(pos)
    assert nl.builds == 1  # some atom moved > 0.5 Å: rebuilt from the current positions
    assert edge_keys(edge_index, vec.detach()).equal(fresh_keys(pos.detach(), cells, batch, cutoff))
    # d/dpos of Σ_e w_e (r_e · c) = c (Σ_{e: src = k} w_e − Σ_{e: dst = k} w_e)
    w = torch.rand(vec.shape[0], dtype=vec.dtype, generator=torch.Generator().manual_seed(1))
    c = torch.tensor([0.3, -1.0, 2.0], dtype=vec.dtype)
    (w * (vec @ c)).sum().backward()
    n = pos.shape[0]
    per_atom = torch.zeros(n, dtype=w.dtype).index_add(0, edge_index[0], w)
    per_atom = per_atom.index_add(0, edge_index[1], -w)
    torch.testing.assert_close(pos.grad, per_atom[:, None] * c, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="skin"):
        VerletList(cutoff, -0.1)


def test_node_major_table_holds_every_edge_once_and_sums_like_a_scatter():
    """The (centre, slot) table of a shuffled list with unequal neighbour counts (a rattled
    triclinic box with three atoms removed): every edge once, in its centre's row, in the
    order given; padding flagged and pointing at the centre; a sum over slots equals the
    scatter over the flat list."""
    atoms = random_triclinic(4)
    del atoms[[0, 17, 40]]
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)
    edge_index, shifts = neighbour_list(pos, cell, 4.5)
    order = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    edge_index, shifts = edge_index[:, order], shifts[order]
    n = len(atoms)
    table, table_shifts, real = node_major_edges(edge_index, shifts, n)
    counts = torch.bincount(edge_index[1], minlength=n)
    slots = int(counts.max())
    assert counts.min() < slots  # unequal counts: the table has padding to flag
    assert table.shape == (2, n, slots) and real.shape == (n, slots)
    assert table_shifts.shape == (n, slots, 3)
    assert torch.equal(real.sum(1), counts)
    assert torch.equal(table[1], torch.arange(n).unsqueeze(1).expand(n, slots))
    assert torch.equal(table[0][~real], table[1][~real])  # padding: the centre itself
    assert bool((table_shifts[~real] == 0).all())
    # real slots first in every row, and every edge exactly once, in the given order per centre
    assert bool((real[:, 1:] <= real[:, :-1]).all())
    for centre in (0, 5, n - 1):
        mine = edge_index[1] == centre
        assert torch.equal(table[0, centre][real[centre]], edge_index[0][mine])
        assert torch.equal(table_shifts[centre][real[centre]], shifts[mine])
    vec = edge_vectors(pos, cell, edge_index, shifts)
    want = torch.zeros(n, 3, dtype=vec.dtype).index_add_(0, edge_index[1], vec)
    flat = table.reshape(2, -1)
    table_vec = edge_vectors(pos, cell, flat, table_shifts.reshape(-1, 3))
    table_vec = table_vec * real.reshape(-1, 1)
    torch.testing.assert_close(table_vec.reshape(n, slots, 3).sum(1), want)

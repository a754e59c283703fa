import ase.build
import numpy as np
import pytest
import torch
from ase.neighborlist import neighbor_list
from torch_geometric.data import Batch

from equignnmd.graph import check_box, edge_vectors, make_data, neighbour_list, wrap_positions


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
        check_box(small.cell.array, 6.287, where="test.xyz")
    check_box(small.repeat((2, 2, 2)).cell.array, 6.287)


def test_verlet_list_reuse_is_exact_and_rebuilds_beyond_half_the_skin():
    import torch

    from equignnmd.graph import VerletList, neighbour_list

    atoms = ase.build.bulk("Al", "fcc", a=4.05, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=1)
    pos = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)[None]
    graph = torch.zeros(len(pos), dtype=torch.long)
    nl = VerletList(pos, cell, graph, cutoff=5.0, skin=1.0)
    assert nl.builds == 1

    def pairs(src, dst, vec):
        return sorted(zip(src.tolist(), dst.tolist(), vec.round(decimals=6).tolist()))

    def fresh(p):
        ei, sh = neighbour_list(p, cell, 5.0, graph)
        vec = p[ei[0]] - p[ei[1]] + sh.to(p.dtype) @ cell[0]
        return pairs(ei[0], ei[1], vec)

    gen = torch.Generator().manual_seed(0)
    moved = pos + 0.2 * torch.randn(pos.shape, generator=gen, dtype=pos.dtype).clamp(-1, 1)
    assert float((moved - pos).norm(dim=-1).max()) < 0.5  # within half the skin: reused
    src, dst, vec, _ = nl.edges(moved)
    assert nl.builds == 1 and pairs(src, dst, vec) == fresh(moved)
    far = pos + torch.tensor([0.6, 0.0, 0.0]) * (torch.arange(len(pos)) % 2)[:, None]
    src, dst, vec, _ = nl.edges(far)
    assert nl.builds == 2 and pairs(src, dst, vec) == fresh(far)

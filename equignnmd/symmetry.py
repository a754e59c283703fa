"""How far a model is from each symmetry of the dynamics: one float per check.

Every function takes any :class:`~equignnmd.models.base.SurrogateModel` and a ``Data`` (or a
``Batch``) built by :func:`equignnmd.graph.make_data`, transforms a copy of the input, runs the
model on both (in the model's dtype and device, without gradients) and returns the largest
deviation from the exact symmetry, **relative** to the largest magnitude of the compared output
(0 means exact; float64 rounding gives ~1e-15, float32 ~1e-7):

=============================  ==============================================================
:func:`rotation_error`         random orthogonal matrices Q (proper and improper) applied to
                               positions, velocities and cell; outputs must rotate as vectors
:func:`translation_error`      a rigid shift of every atom (re-wrapped into the cell)
:func:`boundary_crossing_error`  some atoms moved by whole lattice vectors (left unwrapped)
:func:`permutation_error`      atoms renumbered within each system (each carrying its
                               species and mass; or only within each species)
:func:`replica_error`          a periodic supercell (default 2×2×2): every copy of an atom must
                               get the original atom's output (locality)
:func:`momentum_error`         |Σ m v(t+Δt) − Σ m v(t)| / Σ m |v(t)| per system
:func:`com_error`              |Σ m d − P Δt| / Σ m |d| per system (``at_rest=True``: the net
                               momentum is removed from the input first)
=============================  ==============================================================

:func:`species_swap_change` is the one check that must *not* be 0: the change of the outputs
when the species labels of atoms of different species are exchanged (a model that reads
species responds).

For a model without a velocity head (``Prediction.velocity is None``) the velocity used is the
finite difference d / Δt, as in :meth:`SurrogateModel.predict`. :func:`symmetry_report` runs
them all.
"""

from __future__ import annotations

import itertools

import torch
from torch_geometric.data import Batch, Data

from .graph import wrap_positions
from .materials import ALUMINIUM
from .units import fs_to_ps

_FIELDS = ("pos", "vel", "species", "mass", "cell", "dt_fs", "temperature_K")


def _graphs(data) -> list[Data]:
    """Independent float64 CPU copies of each system, with only the model's input fields
    (transformations are applied in float64; :func:`run_model` casts to the model's dtype)."""
    items = data.to_data_list() if isinstance(data, Batch) else [data]
    out = []
    for g in items:

        def f64(x):
            return torch.as_tensor(x).detach().to("cpu", torch.float64).clone()

        out.append(
            Data(
                pos=f64(g.pos),
                vel=f64(g.vel),
                species=g.species.detach().cpu().clone(),
                mass=f64(g.mass),
                cell=f64(g.cell).reshape(1, 3, 3),
                dt_fs=f64(g.dt_fs).reshape(1),
                temperature_K=f64(g.temperature_K).reshape(1),
                num_nodes=g.pos.shape[0],
            )
        )
    return out


@torch.no_grad()
def run_model(model, graphs: list[Data]) -> tuple[torch.Tensor, torch.Tensor]:
    """Displacement and velocity (N, 3) of ``model`` on ``graphs``, float64 on the CPU."""
    dtype, device = model.dtype, model.device
    items = []
    for g in graphs:
        g = g.clone()
        for key in ("pos", "vel", "mass", "cell", "dt_fs", "temperature_K"):
            g[key] = g[key].to(dtype)
        items.append(g)
    batch = Batch.from_data_list(items).to(device)
    was_training = model.training
    model.eval()
    try:
        out = model(model.prepare(batch))
    finally:
        model.train(was_training)
    disp = out.displacement.double().cpu()
    if out.velocity is None:
        dt_ps = fs_to_ps(batch.dt_fs.double().cpu()[batch.batch.cpu()])
        vel = disp / dt_ps.unsqueeze(-1)
    else:
        vel = out.velocity.double().cpu()
    return disp, vel


def _relative(pairs) -> float:
    err, scale = 0.0, 0.0
    for got, want in pairs:
        err = max(err, float((got - want).abs().max()))
        scale = max(scale, float(want.abs().max()))
    return err / scale if scale > 0 else err


def random_orthogonal(generator: torch.Generator, improper: bool) -> torch.Tensor:
    """A Haar-random 3×3 rotation (det +1), or a rotation times −1 (det −1), float64."""
    a = torch.randn(3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if improper else q


def rotation_error(model, data, trials: int = 4, seed: int = 0, reflections: bool = True):
    """Max relative error of outputs under x → Q x (trials alternate proper / improper Q)."""
    gen = torch.Generator().manual_seed(seed)
    graphs = _graphs(data)
    d0, v0 = run_model(model, graphs)
    worst = 0.0
    for k in range(trials):
        q = random_orthogonal(gen, improper=reflections and k % 2 == 1)
        moved = []
        for g in graphs:
            g = g.clone()
            for key in ("pos", "vel", "cell"):
                g[key] = g[key] @ q.T
            moved.append(g)
        d1, v1 = run_model(model, moved)
        worst = max(worst, _relative([(d1, d0 @ q.T), (v1, v0 @ q.T)]))
    return worst


def translation_error(model, data, seed: int = 0) -> float:
    """Max relative change of outputs when every atom is shifted by one random vector; the
    positions are wrapped back into the cell, so atoms cross the periodic boundary."""
    gen = torch.Generator().manual_seed(seed)
    graphs = _graphs(data)
    d0, v0 = run_model(model, graphs)
    moved = []
    for g in graphs:
        g = g.clone()
        frac = torch.rand(3, generator=gen, dtype=torch.float64)
        shift = frac @ g.cell[0]
        g.pos = wrap_positions(g.pos + shift, g.cell)
        moved.append(g)
    d1, v1 = run_model(model, moved)
    return _relative([(d1, d0), (v1, v0)])


def boundary_crossing_error(model, data, fraction: float = 0.25, seed: int = 0) -> float:
    """Max relative change of outputs when a random ``fraction`` of the atoms is moved by
    whole (non-zero, mixed-sign) lattice vectors and left outside the cell."""
    gen = torch.Generator().manual_seed(seed)
    graphs = _graphs(data)
    d0, v0 = run_model(model, graphs)
    moved = []
    for g in graphs:
        g = g.clone()
        n = g.pos.shape[0]
        pick = torch.randperm(n, generator=gen)[: max(1, int(fraction * n))]
        shifts = torch.randint(-2, 3, (len(pick), 3), generator=gen)
        shifts[(shifts == 0).all(-1), 0] = 1
        g.pos[pick] = g.pos[pick] + shifts.double() @ g.cell[0]
        moved.append(g)
    d1, v1 = run_model(model, moved)
    return _relative([(d1, d0), (v1, v0)])


def within_species_permutation(species: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation p (N,) of atoms with ``species[p] == species``: each atom takes
    the place of a random atom of its own species (so a per-atom species array, such as a
    LAMMPS type column, stays as it is)."""
    n = species.shape[0]
    z = species.to(torch.long) * n
    shuffled = torch.argsort(z + torch.randperm(n, generator=generator))  # grouped, random
    in_order = torch.argsort(z + torch.arange(n))  # grouped, by index
    perm = torch.empty_like(in_order)
    perm[in_order] = shuffled  # both list each species' atoms in the same slots
    return perm


def permutation_error(model, data, seed: int = 0, within_species: bool = False) -> float:
    """Max relative error when the atoms of each system are renumbered: outputs must follow.

    Every atom carries its species and mass along; ``within_species``: atoms trade places
    only with atoms of their own species (:func:`within_species_permutation`)."""
    gen = torch.Generator().manual_seed(seed)
    graphs = _graphs(data)
    d0, v0 = run_model(model, graphs)
    moved, order, offset = [], [], 0
    for g in graphs:
        n = g.pos.shape[0]
        if within_species:
            perm = within_species_permutation(g.species, gen)
        else:
            perm = torch.randperm(n, generator=gen)
        g = g.clone()
        for key in ("pos", "vel", "species", "mass"):
            g[key] = g[key][perm]
        moved.append(g)
        order.append(perm + offset)
        offset += n
    perm = torch.cat(order)
    d1, v1 = run_model(model, moved)
    return _relative([(d1, d0[perm]), (v1, v0[perm])])


def species_swap_change(model, data, pairs: int = 4, seed: int = 0) -> float:
    """Max relative change of outputs when the species *labels* of ``pairs`` random pairs of
    atoms of different species in each system are exchanged (masses, positions and
    velocities stay): how far the model is from being blind to species. Not a symmetry: a
    model that reads species must give a clearly non-zero number. Masses stay so that the
    change comes from the species input alone (a model removing mass-weighted means would
    respond to swapped masses even if it ignored species). ``ValueError`` for a system with
    one species."""
    gen = torch.Generator().manual_seed(seed)
    graphs = _graphs(data)
    d0, v0 = run_model(model, graphs)
    moved = []
    for k, g in enumerate(graphs):
        kinds = torch.unique(g.species)
        if len(kinds) < 2:
            raise ValueError(
                f"species_swap_change: system {k} has one species ({kinds.tolist()}); "
                "expected at least two"
            )
        a = torch.nonzero(g.species == kinds[0]).squeeze(-1)
        b = torch.nonzero(g.species != kinds[0]).squeeze(-1)
        m = min(int(pairs), len(a), len(b))
        a = a[torch.randperm(len(a), generator=gen)[:m]]
        b = b[torch.randperm(len(b), generator=gen)[:m]]
        g = g.clone()
        g.species[a], g.species[b] = g.species[b].clone(), g.species[a].clone()
        moved.append(g)
    d1, v1 = run_model(model, moved)
    return _relative([(d1, d0), (v1, v0)])


def replicate(g: Data, reps=(2, 2, 2)) -> Data:
    """A periodic supercell of one system: copy-major order (copy k, atom i) → k·N + i."""
    cell = g.cell.reshape(3, 3)
    offsets = torch.tensor(list(itertools.product(*(range(int(r)) for r in reps))))
    shift = offsets.double() @ cell  # (K, 3)
    k = shift.shape[0]
    pos = (g.pos.unsqueeze(0) + shift.unsqueeze(1)).reshape(-1, 3)
    big = cell * torch.tensor([float(r) for r in reps], dtype=cell.dtype).unsqueeze(-1)
    return Data(
        pos=pos,
        vel=g.vel.repeat(k, 1),
        species=g.species.repeat(k),
        mass=g.mass.repeat(k),
        cell=big.reshape(1, 3, 3),
        dt_fs=g.dt_fs.clone(),
        temperature_K=g.temperature_K.clone(),
        num_nodes=pos.shape[0],
    )


def replica_error(model, data, reps=(2, 2, 2)) -> float:
    """Max relative difference between the outputs of every periodic copy of an atom in a
    ``reps`` supercell and the atom's output in the original cell."""
    graphs = _graphs(data)
    worst = 0.0
    for g in graphs:
        n = g.pos.shape[0]
        d0, v0 = run_model(model, [g])
        d1, v1 = run_model(model, [replicate(g, reps)])
        d1, v1 = d1.reshape(-1, n, 3), v1.reshape(-1, n, 3)
        worst = max(worst, _relative([(d1, d0.expand_as(d1)), (v1, v0.expand_as(v1))]))
    return worst


def _per_graph(graphs: list[Data], values: torch.Tensor) -> list[torch.Tensor]:
    sizes = [g.pos.shape[0] for g in graphs]
    return list(torch.split(values, sizes))


def momentum_error(model, data) -> float:
    """Max over systems of |Σ m v(t+Δt) − Σ m v(t)| / Σ m |v(t)|."""
    graphs = _graphs(data)
    _, vel = run_model(model, graphs)
    worst = 0.0
    for g, v1 in zip(graphs, _per_graph(graphs, vel)):
        m = g.mass.double().unsqueeze(-1)
        v0 = g.vel.double()
        p0, p1 = (m * v0).sum(0), (m * v1).sum(0)
        scale = float((m * v0).norm(dim=-1).sum())
        worst = max(worst, float((p1 - p0).norm()) / max(scale, 1e-300))
    return worst


def com_error(model, data, at_rest: bool = False) -> float:
    """Max over systems of |Σ m d − P Δt| / Σ m |d| (the centre of mass must move by P Δt / M).

    ``at_rest``: subtract the mass-weighted mean velocity from the input first (P = 0), so the
    centre of mass must stay where it is.
    """
    graphs = _graphs(data)
    if at_rest:
        for g in graphs:
            m = g.mass.unsqueeze(-1)
            g.vel = g.vel - (m * g.vel).sum(0) / m.sum()
    disp, _ = run_model(model, graphs)
    worst = 0.0
    for g, d in zip(graphs, _per_graph(graphs, disp)):
        m = g.mass.double().unsqueeze(-1)
        dt_ps = fs_to_ps(float(g.dt_fs.reshape(-1)[0]))
        p0 = (m * g.vel.double()).sum(0)
        err = (m * d).sum(0) - p0 * dt_ps
        scale = float((m * d).norm(dim=-1).sum())
        worst = max(worst, float(err.norm()) / max(scale, 1e-300))
    return worst


def symmetry_report(model, data, seed: int = 0) -> dict[str, float]:
    """Every check above on ``data``: {name: relative error}."""
    return {
        "rotation_reflection": rotation_error(model, data, seed=seed),
        "translation": translation_error(model, data, seed=seed),
        "boundary_crossing": boundary_crossing_error(model, data, seed=seed),
        "permutation": permutation_error(model, data, seed=seed),
        "replica_2x2x2": replica_error(model, data),
        "momentum": momentum_error(model, data),
        "centre_of_mass": com_error(model, data),
        "centre_of_mass_at_rest": com_error(model, data, at_rest=True),
    }


__all__ = [
    "boundary_crossing_error",
    "com_error",
    "momentum_error",
    "permutation_error",
    "random_orthogonal",
    "replica_error",
    "replicate",
    "rotation_error",
    "run_model",
    "species_swap_change",
    "symmetry_report",
    "translation_error",
    "within_species_permutation",
]


def side_by_side(seed: int = 0) -> str:
    """Markdown table: every check on the small ``paper`` (absolute positions on and off) and
    ``equivariant`` models, float64, one rattled 256-atom FCC Al box with random velocities."""
    import ase.build
    import numpy as np

    from .graph import make_data
    from .models import build_model

    rng = np.random.default_rng(seed)
    al = ALUMINIUM
    atoms = ase.build.bulk(al.element, al.structure, a=al.lattice_A, cubic=True).repeat(4)
    atoms.rattle(0.05, seed=seed)
    vel = rng.normal(scale=5.0, size=(len(atoms), 3))
    desc = np.tile([0.2, 1.0, 0.19, 0.55, 12.0], (len(atoms), 1))
    data = make_data(
        atoms.positions,
        vel,
        atoms.cell.array,
        atoms.numbers,
        atoms.get_masses(),
        dt_fs=10.0,
        temperature_K=300.0,
        descriptors=desc,
        dtype=torch.float64,
    )
    torch.manual_seed(seed)
    models = {
        "paper (absolute positions on, the paper's default)": build_model(
            "paper", blocks=2, hidden=32, heads=2, ffn=64
        ),
        "paper (absolute positions off)": build_model(
            "paper", blocks=2, hidden=32, heads=2, ffn=64, absolute_positions=False
        ),
        "equivariant": build_model("equivariant", channels=8, layers=2),
    }
    reports = {name: symmetry_report(m.double(), data, seed=seed) for name, m in models.items()}
    checks = list(next(iter(reports.values())))
    lines = [
        "| check (relative error, float64) | " + " | ".join(reports) + " |",
        "|---|" + "---|" * len(reports),
    ]
    for c in checks:
        lines.append(f"| {c} | " + " | ".join(f"{r[c]:.1e}" for r in reports.values()) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m equignnmd.symmetry
    print(side_by_side())

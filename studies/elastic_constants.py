"""Static elastic constants of a checkpoint's potential beside the reference EAM file's
(issue 12: the box's longest waves, which set the site drift of a long run, move at speeds
set by C11, C12 and C44).

For a ``symplectic`` checkpoint the potential of its longest step (the one a rollout takes),
for any other checkpoint with an energy head, that head. Perfect FCC crystal of 5 × 5 × 5
conventional cells at each lattice constant; central differences of the energy over strains
of ±0.4 %: hydrostatic (bulk modulus B, pressure P), tetragonal (C11 − C12) and a simple shear
(C44); C11 = B + 2 (C11 − C12) / 3, C12 = B − (C11 − C12) / 3. LAMMPS evaluates the reference.

    python studies/elastic_constants.py --checkpoint CKPT [--checkpoint CKPT2] \
        [--lattice 4.0732,4.0868]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

STRAIN = 0.004
CELLS = 5


def fcc(a: float, cells: int = CELLS):
    """(fractional positions (N, 3), cell (3, 3) Å) of a cubic FCC crystal."""
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.stack(np.meshgrid(*[range(cells)] * 3, indexing="ij"), -1).reshape(-1, 3)
    frac = (grid[:, None, :] + base[None]).reshape(-1, 3) / cells
    return frac, np.eye(3) * a * cells


def constants(energy, a: float) -> dict:
    """{"P", "B", "C11", "C12", "C44"} in GPa and the energy per atom "E0" (eV) of
    ``energy(positions (N, 3), cell (3, 3)) -> eV`` on FCC at lattice constant ``a`` Å."""
    from equignnmd.units import EV_PER_A3_IN_GPA

    frac, cell0 = fcc(a)
    volume = float(np.linalg.det(cell0))

    def e(strain):
        cell = cell0 @ (np.eye(3) + strain)
        return energy(frac @ cell, cell)

    e0, h = e(np.zeros((3, 3))), STRAIN

    def second(strain):  # d²E/dh² along a strain direction, eV
        return (e(h * strain) - 2 * e0 + e(-h * strain)) / h**2

    hydro = (e(h * np.eye(3)) - e(-h * np.eye(3))) / (2 * h)
    bulk = second(np.eye(3)) / (9 * volume)
    shear_tet = second(np.diag([1.0, -1.0, 0.0])) / (2 * volume)  # C11 − C12
    simple = np.zeros((3, 3))
    simple[1, 0] = 1.0  # b gains an x component: lower-triangular cells stay so
    c44 = second(simple) / volume
    to = EV_PER_A3_IN_GPA
    return {
        "E0": e0 / len(frac),
        "P": -hydro / (3 * volume) * to,
        "B": bulk * to,
        "C11": (bulk + 2 * shear_tet / 3) * to,
        "C12": (bulk - shear_tet / 3) * to,
        "C44": c44 * to,
    }


def model_energy(checkpoint: str):
    """``energy(positions, cell)`` of a checkpoint's potential (module doc), float64."""
    import equignnmd
    from equignnmd.graph import edge_vectors, neighbour_list

    model = equignnmd.load_checkpoint(checkpoint, device="cpu")
    if hasattr(model, "coefficients") and hasattr(model, "potential"):
        head = model.potential
        h = torch.tensor([float(model.hparams.max_substep_fs)], dtype=torch.float64)
        coefficients = model.coefficients(h).detach()
    elif getattr(model, "energy_head", None) is not None:
        head = model.energy_head
        coefficients = head.coefficients.to(torch.float64)[None]
    else:
        raise SystemExit(f"checkpoint {checkpoint}: no potential and no energy head to probe")
    z = int(head.hparams.species[0])

    def energy(pos, cell):
        pos = torch.as_tensor(pos, dtype=torch.float64)
        cell = torch.as_tensor(cell, dtype=torch.float64)[None]
        n = len(pos)
        species, batch = torch.full((n,), z), torch.zeros(n, dtype=torch.long)
        edges, shifts = neighbour_list(pos, cell, head.cutoff, batch)
        vec = edge_vectors(pos, cell, edges, shifts, batch)
        with torch.no_grad():
            u, _ = head.energy_and_forces(pos, species, batch, coefficients, edges, vec)
        return float(u.sum())

    return energy


def reference_energy(potential: str = "reference"):
    """``energy(positions, cell)`` of an EAM file (default: the Mendelev Al file) in LAMMPS."""
    from equignnmd.potential import LammpsEnergy

    source = LammpsEnergy(potential)

    def energy(pos, cell):
        n = len(pos)
        species, batch = torch.full((n,), 13), torch.zeros(n, dtype=torch.long)
        pos = torch.as_tensor(pos, dtype=torch.float64)
        return float(source(pos, torch.as_tensor(cell)[None], species, batch)[0])

    return energy


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| potential | a (Å) | E0 (eV/atom) | P (GPa) | B | C11 | C12 | C44 (GPa) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (name, a), c in rows.items():
        lines.append(
            f"| {name} | {a:.4f} | {c['E0']:.4f} | {c['P']:.3f} | {c['B']:.1f} | "
            f"{c['C11']:.1f} | {c['C12']:.1f} | {c['C44']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", action="append", required=True, help="repeatable")
    p.add_argument("--lattice", default="4.0732,4.0868", help="Å, comma-separated")
    p.add_argument("--potential", default="reference", help="EAM file for the reference")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sources = {ck: model_energy(ck) for ck in args.checkpoint}
    sources[f"LAMMPS ({args.potential})"] = reference_energy(args.potential)
    rows = {}
    for a in (float(x) for x in args.lattice.split(",")):
        for name, energy in sources.items():
            rows[(name, a)] = constants(energy, a)
    print(table(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

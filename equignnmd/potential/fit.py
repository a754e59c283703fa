"""Fit the learned potential (:mod:`equignnmd.potential.eam`) to recorded energies and forces.

``equignnmd energy-head --checkpoint C --data D --out C_E.pt`` reads frames of the dataset's
*training* temperatures (the held-out ones are only scored), fits the head's functions to the
recorded potential energies (``thermo/pe_eV``) and forces (−∇U, by automatic differentiation of
the head) and writes a copy of the checkpoint with the head inside: the surrogate weights are
untouched, so its steps are bit-for-bit those of the input checkpoint. Rollouts then conserve
the head's energy with ``--energy model`` (:class:`~equignnmd.potential.sources.ModelEnergy`).

Frames: ``frames_per_temperature`` evenly spaced frames of the first ``1 − val_fraction`` of
every training trajectory for the fit; the same number from the last ``val_fraction`` (later
in time, so less correlated with the fit frames) for validation; every held-out temperature
scored on the same number of frames. Scores: energy RMSE per atom (absolute, and after removing
each temperature's mean offset: the part that matters for energy conservation), force RMSE.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, build
from ..data.format import held_out_files, open_trajectories, read_index
from ..graph import edge_vectors, neighbour_list
from ..units import EV_PER_A3_IN_GPA
from .eam import FORM_FIELDS, VOIGT, EnergyHead
from .sources import reference_source

__all__ = [
    "EnergyFitConfig",
    "design_matrix",
    "fit_energy_head",
    "load_energy_frames",
    "reference_virials",
    "report_markdown",
    "score_energy_head",
    "stress_design_matrix",
    "write_report",
]


@dataclass
class EnergyFitConfig:
    """How an energy head is fitted (``equignnmd energy-head``)."""

    frames_per_temperature: int = 20
    """Fit frames per training temperature (as many again for validation)."""
    val_fraction: float = 0.2
    """The last fraction of every trajectory (in time) kept for validation."""
    force_weight: float = 1.0
    """Weight of the force rows (force errors over the force RMS, averaged per frame) against
    the energy rows (per-atom energy errors over the per-atom energy spread of the fit data)."""
    stress_weight: float = 0.0
    """Weight of the stress rows (each frame's six strain derivatives ∂U/∂ε per atom, over
    their RMS in the fit data; the reference's from a single point of the dataset's own
    reference, LAMMPS or ASE) against the energy rows; 0: energies and forces only. The
    stresses carry the crystal's elastic response, which the box's longest waves feel."""
    ridge: float = 1.0e-9
    """Ridge regularisation of the least-squares solve, relative to the normalised columns."""
    num_radial: int = 12
    density_decays: list[float] = dataclasses.field(default_factory=lambda: [4.0, 8.0])
    embedding_order: int = 4
    core_radius: float = 0.0
    core_strength: float = 0.0
    batch_frames: int = 8

    def validate(self, source: str) -> None:
        for name in ("frames_per_temperature", "num_radial", "embedding_order", "batch_frames"):
            if not getattr(self, name) > 0:
                raise ConfigError(
                    f"{source}: field '{name}' is {getattr(self, name)}; expected > 0"
                )
        if not 0 < self.val_fraction < 1:
            raise ConfigError(
                f"{source}: field 'val_fraction' is {self.val_fraction}; expected 0 < it < 1"
            )
        for name in ("force_weight", "stress_weight", "ridge"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"{source}: field '{name}' is {getattr(self, name)}; expected ≥ 0"
                )


def load_energy_frames(root, temperatures_K, n_frames: int, part: tuple[float, float], files=None):
    """Frames of the trajectories at ``temperatures_K`` (and, given ``files``, only those
    trajectory files) from the fraction ``part`` = (lo, hi) of each trajectory: a list of dicts
    with ``pos`` (N, 3) Å, ``cell`` (3, 3) Å, ``species`` (N,), ``pe_eV`` (float), ``forces``
    (N, 3) eV/Å, ``temperature_K`` and ``trajectory`` (the file's stem)."""
    frames = []
    for tr in open_trajectories(root):
        if not any(abs(tr.temperature_K - T) < 1e-6 for T in temperatures_K):
            continue
        if files is not None and tr.path.name not in files:
            continue
        where = f"trajectory file {tr.path}"
        if "pe_eV" not in tr.thermo_names:
            raise ValueError(
                f"{where}: no field 'thermo/pe_eV'; expected the recorded potential energy of "
                "every frame (written by `equignnmd generate`)"
            )
        if not tr.has_forces:
            raise ValueError(f"{where}: no field 'forces'; expected forces of every frame, eV/Å")
        lo, hi = int(part[0] * (tr.n_frames - 1)), int(part[1] * (tr.n_frames - 1))
        ids = np.unique(np.linspace(lo, hi, n_frames).round().astype(int))
        pe = tr.thermo("pe_eV")[ids]
        pos, cell, forces = tr.read("positions", ids), tr.read("cell", ids), tr.read("forces", ids)
        for k in range(len(ids)):
            frames.append(
                {
                    "pos": torch.as_tensor(pos[k], dtype=torch.float64),
                    "cell": torch.as_tensor(cell[k], dtype=torch.float64),
                    "species": torch.as_tensor(tr.species),
                    "pe_eV": float(pe[k]),
                    "forces": torch.as_tensor(forces[k], dtype=torch.float64),
                    "temperature_K": tr.temperature_K,
                    "trajectory": tr.path.stem,
                }
            )
    return frames


def reference_virials(root, frames, batch_frames: int = 8) -> None:
    """Add ``virial`` (6,) eV, ∂U/∂ε in Voigt order (:meth:`LammpsEnergy.virials`), to every
    frame: single points of the reference the dataset at ``root`` was generated with
    (:func:`~equignnmd.potential.sources.reference_source`: its LAMMPS potential or its ASE
    calculator)."""
    source = reference_source(read_index(root), f"dataset {root}")
    try:
        for k in range(0, len(frames), batch_frames):
            chunk = frames[k : k + batch_frames]
            pos, cell, species, batch, *_ = _batch(chunk)
            for f, v in zip(chunk, source.virials(pos, cell, species, batch)):
                f["virial"] = v
    finally:
        source.close()


def _batch(frames):
    pos = torch.cat([f["pos"] for f in frames])
    cell = torch.stack([f["cell"] for f in frames])
    species = torch.cat([f["species"] for f in frames])
    counts = torch.as_tensor([len(f["species"]) for f in frames], dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(len(frames)), counts.long())
    pe = torch.as_tensor([f["pe_eV"] for f in frames], dtype=torch.float64)
    forces = torch.cat([f["forces"] for f in frames])
    return pos, cell, species, batch, counts, pe, forces


def design_matrix(head, frames):
    """Energy features (R, C), force features (N, 3, C) = −∂features/∂positions, and the
    batch's counts (R,), energies (R,) eV, forces (N, 3) eV/Å, system of every atom (N,)."""
    pos, cell, species, batch, counts, pe, forces = _batch(frames)
    with torch.no_grad():
        feats = head.features(pos, cell, species, batch, len(frames))
        ffeats = head.force_features(pos, cell, species, batch)
    pos.requires_grad_(True)
    if head.has_core:  # the fixed core is no coefficient's: fit what is left of the targets
        core = head.core_energy(pos, cell, batch, len(frames))
        (g,) = torch.autograd.grad(core.sum(), pos, allow_unused=True)
        pe = pe - core.detach()
        forces = forces if g is None else forces + g
    return feats, ffeats, counts, pe, forces, batch


def stress_design_matrix(head, frames):
    """Virial features (R, 6, C) (:meth:`EnergyHead.virial_features`) and the frames'
    reference virials (R, 6) eV less the fixed core's (:func:`reference_virials`)."""
    pos, cell, species, batch, *_ = _batch(frames)
    n = len(frames)
    with torch.no_grad():
        vfeats = head.virial_features(pos, cell, species, batch, n)
    target = torch.stack([f["virial"] for f in frames])
    if head.has_core:  # ∂U_core/∂ε by autograd through a strained copy of every system
        eps = torch.zeros(n, 3, 3, dtype=torch.float64, requires_grad=True)
        strain = torch.eye(3, dtype=torch.float64) + eps
        core = head.core_energy(
            torch.einsum("ni,nij->nj", pos, strain[batch]), cell @ strain, batch, n
        )
        (g,) = torch.autograd.grad(core.sum(), eps, allow_unused=True)
        if g is not None:
            a, b = VOIGT
            target = target - g[:, a, b]
    return vfeats, target


def score_energy_head(head, frames, batch_frames: int = 8) -> dict:
    """RMSEs of ``head`` on ``frames``: ``energy_meV_per_atom`` (absolute),
    ``energy_fluct_meV_per_atom`` (after removing the mean offset of each temperature: what
    energy conservation along a trajectory sees), ``force_eV_per_A``, ``force_rms_eV_per_A``
    (of the reference, for scale), ``frames``, and where every frame carries a reference
    ``virial`` (:func:`reference_virials`) ``stress_GPa`` and ``stress_rms_GPa``."""
    de, temps, df2, f2, n_comp = [], [], 0.0, 0.0, 0
    ds2, s2 = [], []
    for k in range(0, len(frames), batch_frames):
        chunk = frames[k : k + batch_frames]
        # the head's own energy and its gradient: one backward, not the fit's one per column
        pos, cell, species, batch, counts, pe, f_ref = _batch(chunk)
        pos.requires_grad_(True)
        energy = head(pos, cell, species, batch, len(chunk))
        (grad,) = torch.autograd.grad(energy.sum(), pos)
        de.append(((energy.detach() - pe) / counts).numpy())
        temps += [f["temperature_K"] for f in chunk]
        df2 += float(((-grad - f_ref) ** 2).sum())
        f2 += float((f_ref**2).sum())
        n_comp += f_ref.numel()
        if all("virial" in f for f in chunk):  # stresses σ = −(∂U/∂ε) / V, GPa
            coefficients = head.coefficients.to(torch.float64)
            vfeats, target = stress_design_matrix(head, chunk)
            volume = torch.linalg.det(cell).abs()[:, None] / EV_PER_A3_IN_GPA
            ds2.append((((vfeats @ coefficients - target) / volume) ** 2).numpy())
            s2.append(((target / volume) ** 2).numpy())
    de, temps = np.concatenate(de), np.asarray(temps)
    fluct = np.concatenate([de[temps == T] - de[temps == T].mean() for T in np.unique(temps)])
    out = {
        "frames": len(frames),
        "energy_meV_per_atom": 1000.0 * float(np.sqrt(np.mean(de**2))),
        "energy_fluct_meV_per_atom": 1000.0 * float(np.sqrt(np.mean(fluct**2))),
        "force_eV_per_A": math.sqrt(df2 / n_comp),
        "force_rms_eV_per_A": math.sqrt(f2 / n_comp),
    }
    if ds2 and len(np.concatenate(ds2)) == len(frames):
        out["stress_GPa"] = float(np.sqrt(np.mean(np.concatenate(ds2))))
        out["stress_rms_GPa"] = float(np.sqrt(np.mean(np.concatenate(s2))))
    return out


def fit_energy_head(model, root, cfg: EnergyFitConfig | dict | None = None, log=print):
    """An :class:`~equignnmd.potential.eam.EnergyHead` for ``model`` (its cutoff and
    species) fitted by weighted least squares to the energies and forces of the dataset at
    ``root``; returns ``(head, report)`` with the scores per split and temperature
    (:func:`score_energy_head`), the settings and the wall time. ``log`` takes one line of
    progress at a time (``None``: silent)."""
    log = log or (lambda _msg: None)
    if isinstance(cfg, EnergyFitConfig):
        cfg = dataclasses.asdict(cfg)
    cfg = build(EnergyFitConfig, dict(cfg or {}), "energy fit settings")
    meta = read_index(root)
    # held out: the same trajectories the trainer keeps out (a held-out facet at a trained
    # temperature included)
    held = held_out_files(meta)
    entries = meta["trajectories"]
    train_files = {t["file"] for t in entries} - held
    train_T = sorted({float(t["temperature_K"]) for t in entries if t["file"] in train_files})
    test = sorted({float(t["temperature_K"]) for t in entries if t["file"] in held})
    if not train_T:
        raise ValueError(
            f"dataset {root}: every trajectory is held out (field 'test_temperatures_K' "
            f"{meta.get('test_temperatures_K', [])} or the entries' 'test' flags); expected at "
            "least one to fit on"
        )
    t0 = time.perf_counter()
    n, split = cfg.frames_per_temperature, 1.0 - cfg.val_fraction
    fit_frames = load_energy_frames(root, train_T, n, (0.0, split), train_files)
    val_frames = load_energy_frames(root, train_T, n, (split, 1.0), train_files)
    test_frames = load_energy_frames(root, test, n, (0.0, 1.0), held)
    species = sorted({int(z) for f in fit_frames for z in f["species"].unique().tolist()})
    model_species = [int(z) for z in getattr(model.stats, "species", []) or []]
    if model_species and set(species) - set(model_species):
        raise ValueError(
            f"dataset {root}: species {species} are not all the model's {model_species}; "
            "expected the data the model was trained on"
        )
    head = EnergyHead(
        {
            "cutoff": float(model.cutoff),
            "species": species,
            **{k: getattr(cfg, k) for k in FORM_FIELDS},
        }
    )
    # ρ̄_d: mean density per atom over the fit frames (a few suffice: a solid's density
    # changes by per cents between 5 and 800 K)
    with torch.no_grad():
        pos, cell, spec, batch, *_ = _batch(fit_frames[:: max(1, len(fit_frames) // 8)])
        ei, sh = neighbour_list(pos, cell, head.cutoff, batch)
        r = edge_vectors(pos, cell, ei, sh, batch).norm(dim=-1)
        per_edge = head.density_functions(r)[0]
        head.density_scale.copy_(head.densities(per_edge, ei[1], len(pos)).mean(0))
    per_atom = np.array([f["pe_eV"] / len(f["species"]) for f in fit_frames])
    e_scale = max(float(per_atom.std()), 1e-4)
    f_scale = max(float(torch.cat([f["forces"] for f in fit_frames]).pow(2).mean().sqrt()), 1e-4)
    if cfg.stress_weight > 0:  # the reference's virials, and their RMS per atom in the fit
        reference_virials(root, fit_frames + val_frames + test_frames, cfg.batch_frames)
        per_atom_virial = torch.stack([f["virial"] / len(f["species"]) for f in fit_frames])
        s_scale = max(float(per_atom_virial.pow(2).mean().sqrt()), 1e-6)
    # normal equations, accumulated frame batch by frame batch: AᵀA (C, C), Aᵀy (C,)
    c = head.n_features
    ata = torch.zeros(c, c, dtype=torch.float64)
    aty = torch.zeros(c, dtype=torch.float64)
    for k in range(0, len(fit_frames), cfg.batch_frames):
        feats, ffeats, counts, pe, forces, batch = design_matrix(
            head, fit_frames[k : k + cfg.batch_frames]
        )
        a_e = feats / (counts * e_scale)[:, None]
        y_e = pe / (counts * e_scale)
        w = torch.sqrt(cfg.force_weight / (3.0 * counts[batch]))[:, None, None] / f_scale
        a_f = (ffeats * w).reshape(-1, c)
        y_f = (forces.unsqueeze(-1) * w).reshape(-1)
        ata += a_e.T @ a_e + a_f.T @ a_f
        aty += a_e.T @ y_e + a_f.T @ y_f
        if cfg.stress_weight > 0:
            vfeats, virial = stress_design_matrix(head, fit_frames[k : k + cfg.batch_frames])
            w_s = math.sqrt(cfg.stress_weight / 6.0) / (counts * s_scale)[:, None, None]
            a_s = (vfeats * w_s).reshape(-1, c)
            y_s = (virial.unsqueeze(-1) * w_s).reshape(-1)
            ata += a_s.T @ a_s
            aty += a_s.T @ y_s
    norm = ata.diagonal().clamp_min(1e-300).sqrt()
    scaled = ata / norm[:, None] / norm[None, :] + cfg.ridge * torch.eye(c, dtype=torch.float64)
    head.coefficients.copy_(torch.linalg.solve(scaled, aty / norm) / norm)
    wall = time.perf_counter() - t0
    scores = {}
    for name, frames in (("val", val_frames), ("test", test_frames)):
        # one score per temperature; per trajectory where several share a temperature
        # (a states dataset: bulk, a slab and a vacancy at 300 K)
        groups: dict[str, list] = {}
        for f in frames:
            T = f["temperature_K"]
            shared = len({g["trajectory"] for g in frames if g["temperature_K"] == T}) > 1
            groups.setdefault(f"{name} {f['trajectory'] if shared else f'{T:g} K'}", []).append(f)
        for key, sel in groups.items():
            if sel:
                scores[key] = score_energy_head(head, sel)
                s = scores[key]
                log(
                    f"energy head, {key}: energy {s['energy_meV_per_atom']:.3f} "
                    f"meV/atom (fluctuation {s['energy_fluct_meV_per_atom']:.3f}), force "
                    f"{s['force_eV_per_A']:.4f} of {s['force_rms_eV_per_A']:.3f} eV/Å"
                    + (
                        f", stress {s['stress_GPa']:.4f} of {s['stress_rms_GPa']:.3f} GPa"
                        if "stress_GPa" in s
                        else ""
                    )
                )
    report = {
        "data": str(root),
        "data_command": meta.get("command_line"),
        "fit_temperatures_K": train_T,
        "held_out_temperatures_K": test,
        "fit_frames": len(fit_frames),
        "settings": dataclasses.asdict(cfg),
        "coefficients": c,
        "wall_s": round(wall, 1),
        "threads": torch.get_num_threads(),
        "scores": scores,
    }
    return head, report


def report_markdown(report: dict) -> str:
    """The fit's scores as a Markdown table."""
    lines = [
        f"Energy head fitted on {report['fit_frames']} frames of {report['data']} at "
        f"{', '.join(f'{T:g}' for T in report['fit_temperatures_K'])} K "
        f"({report['coefficients']} coefficients, fitted in {report['wall_s']:.0f} s on "
        f"{report['threads']} thread(s)).",
        "",
        "| frames | n | energy RMSE meV/atom | after the mean offset | force RMSE eV/Å "
        "| force RMS eV/Å | stress RMSE GPa | stress RMS GPa |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["scores"].items():
        stress = (
            f"{s['stress_GPa']:.4f} | {s['stress_rms_GPa']:.3f}" if "stress_GPa" in s else "– | –"
        )
        lines.append(
            f"| {name} | {s['frames']} | {s['energy_meV_per_atom']:.3f} | "
            f"{s['energy_fluct_meV_per_atom']:.3f} | {s['force_eV_per_A']:.4f} | "
            f"{s['force_rms_eV_per_A']:.3f} | {stress} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict, path: str | Path) -> None:
    """``report`` as ``path`` (.json) and beside it the Markdown table (.md)."""
    path = Path(path)
    path.write_text(json.dumps(report, indent=2))
    path.with_suffix(".md").write_text(report_markdown(report))

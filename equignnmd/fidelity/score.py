"""Scores of the fidelity benchmark's runs (:mod:`equignnmd.fidelity`): the NVE rows (energy
drift), the NVT trajectory scores against LAMMPS, the one-step errors. Metal units: positions
Å (unwrapped), velocities Å/ps, masses amu, energies eV, times ps.

Every score that weighs atoms by mass takes each atom's own (:func:`box_species`,
:meth:`~equignnmd.materials.Material.atom_masses`): an alloy's elements keep their masses; a
one-element box gives every atom the material's mass, as before. The RDF is the total one
(every pair, whatever its elements).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import analysis
from ..descriptors import CNA_BCC, CNA_FCC, CNA_HCP, compute_descriptors
from ..materials import Material
from ..units import ps_to_fs

LOW_BAND_THZ = 2.0
"""A 500-atom Al box has almost no vibrational states below this frequency."""
BAND_EDGES_THZ = (0.0, 2.0, 4.0, 6.0, 8.0, 12.0)
CRYSTAL_CNA = {"fcc": CNA_FCC, "bcc": CNA_BCC, "hcp": CNA_HCP}
"""The CNA label of each lattice's perfect crystal (``fcc_fraction_end`` counts the atoms
that carry their crystal's; diamond's atoms are all CNA "other": no fraction)."""
SITE_DRIFT_WINDOW_PS = 2.0
"""Sites are averaged over this long at the start and at the end of a run (as the issue
measured the site drift)."""


def box_species(material: Material, n_atoms: int, species=None, where: str = "start") -> np.ndarray:
    """The atomic numbers of a box of ``n_atoms`` atoms of ``material`` (N,): ``species`` where
    given (an alloy's equilibrated state carries them), else every atom the material's one
    element. ValueError naming ``where`` and the field for an alloy without them or a wrong
    length."""
    if species is None:
        if material.composition is not None:
            raise ValueError(
                f"{where}: no field 'species' for a box of the alloy "
                f"{material.composition.label}; expected the atomic number of every atom"
            )
        return np.full(n_atoms, material.atomic_number)
    species = np.asarray(species, dtype=np.int64).reshape(-1)
    if len(species) != n_atoms:
        raise ValueError(
            f"{where}: field 'species' has {len(species)} atomic numbers; expected one for each "
            f"of the {n_atoms} atoms"
        )
    return species


def nve_row(label: str, run: dict, n_atoms: int, step_fs: float, sur=None) -> dict[str, Any]:
    """The NVE row of one run: ``run`` holds ``time_ps``, ``total_energy_eV`` and
    ``temperature_K`` samples; drift (meV/atom/ps, a linear fit) and energy change
    (meV/atom) need three samples. ``sur``: the surrogate run's ``stopped`` and, where
    present, ``steps_completed`` and ``wall_s``. ``_energy`` holds the curve the plots draw."""
    t, e = run["time_ps"], run["total_energy_eV"]
    ok = len(t) >= 3
    row = {
        "run": label,
        "step_fs": step_fs,
        "samples": len(t),
        "duration_ps": float(t[-1] - t[0]) if len(t) else 0.0,
        "drift_meV_per_atom_ps": 1000.0 * analysis.linear_drift(t, e) / n_atoms if ok else None,
        "energy_change_meV_per_atom": 1000.0 * float(e[-1] - e[0]) / n_atoms if ok else None,
        "temperature_start_K": float(run["temperature_K"][0]),
        "temperature_end_K": float(run["temperature_K"][-1]),
        "_energy": (t, e),
    }
    if sur is not None:
        row["stopped"] = sur["stopped"]
        if "steps_completed" in sur:
            row.update(steps_completed=sur["steps_completed"], wall_s=sur["wall_s"])
    return row


def nvt_scores(
    traj: dict,
    ref: dict,
    T: float,
    stride_fs: float,
    cell,
    material: Material,
    min_frames: int,
    species=None,
) -> dict[str, Any]:
    """Scores of one NVT trajectory against the LAMMPS one (both: ``positions``, unwrapped,
    and ``velocities``, (frames, atoms, 3), a frame every ``stride_fs``) at set point ``T``
    (K) in the (3, 3) ``cell`` (Å); the structural and dynamical ones NaN below
    ``min_frames`` frames. ``species`` (atoms,): the atomic numbers, whose masses weigh the
    temperature, VDOS, MSD, site drift and long-wave scores (:func:`box_species`: default
    every atom ``material``'s one element). The RDF is the total one. Keys with ``_`` hold
    the curves the plots draw."""

    nan = float("nan")
    pos, vel = traj["positions"], traj["velocities"]
    n = len(pos)
    out: dict[str, Any] = {"frames": n}
    m = material.atom_masses(box_species(material, pos.shape[1], species, "nvt_scores"))
    temps = analysis.kinetic_temperature(vel, m)
    dof = 3 * pos.shape[1] - 3
    out["temperature_mean_K"] = float(np.mean(temps))
    out["temperature_std_K"] = float(np.std(temps))
    out["canonical_std_K"] = T * math.sqrt(2.0 / dof)
    if n < min_frames:
        return out | dict.fromkeys(
            (
                "rdf_l1",
                "vdos_overlap",
                "vdos_overlap_last_quarter",
                "vdos_low_weight",
                "vdos_mean_THz",
                "msd_plateau_A2",
                "site_drift_A",
                "fcc_fraction_end",
                "long_wave_T_ratio",
            ),
            nan,
        )
    half = slice(n // 2, n)
    r, g = analysis.rdf(pos[half], cell, r_max=6.0)
    k = min(n, len(ref["positions"]))
    _, g_ref = analysis.rdf(ref["positions"][k // 2 : k], cell, r_max=6.0)
    out["rdf_l1"] = analysis.rdf_l1(r, g, g_ref, r_max=6.0)
    out["_rdf"] = (r, g)
    f, d = analysis.vdos(vel, m, stride_fs)
    fr, dr = analysis.vdos(ref["velocities"][:k], m, stride_fs)
    out["_vdos"] = (f, d)
    out["vdos_overlap"] = analysis.vdos_overlap(f, d, fr, dr)
    q = slice(3 * n // 4, n)
    if n - 3 * n // 4 >= min_frames // 2:
        fq, dq = analysis.vdos(vel[q], m, stride_fs)
        fqr, dqr = analysis.vdos(ref["velocities"][3 * k // 4 : k], m, stride_fs)
        out["vdos_overlap_last_quarter"] = analysis.vdos_overlap(fq, dq, fqr, dqr)
    else:
        out["vdos_overlap_last_quarter"] = nan
    bands = analysis.vdos_band_fractions(f, d, BAND_EDGES_THZ)
    out["vdos_low_weight"] = float(bands[0])
    out["vdos_band_fractions"] = bands.tolist()
    out["vdos_mean_THz"] = analysis.mean_frequency(f, d)
    _, msd = analysis.msd(pos, m, origins="first")
    out["msd_plateau_A2"] = float(np.mean(msd[n // 2 :]))
    out["_msd"] = msd
    window = max(2, int(round(ps_to_fs(SITE_DRIFT_WINDOW_PS) / stride_fs)))
    out["site_drift_A"] = analysis.site_drift(pos, min(window, n // 4), m)
    # the crystal's own CNA label (FCC for Al), at the material's own CNA cutoff
    last = torch.as_tensor(pos[-1], dtype=torch.float64)
    cell64 = torch.as_tensor(cell, dtype=torch.float64)
    labels = compute_descriptors(last, cell64, material=material)[:, 1].long()
    own = CRYSTAL_CNA.get(material.structure)
    out["fcc_fraction_end"] = nan if own is None else float((labels == own).double().mean())
    _, t_k = analysis.plane_wave_temperatures(pos, vel, cell, m, max_shell=1)
    out["long_wave_T_ratio"] = float(t_k[0] / np.mean(temps))
    return out


def step_scores(name: str, disp, vel, true_disp, true_vel, m) -> dict[str, float]:
    """One-step scores of predictor ``name``: displacements and velocities
    (pairs, atoms, 3), Å and Å/ps, against the true ones; ``m`` (atoms,) amu. Mean position
    error (Å), kinetic-energy bias K_pred / K_true − 1 (centre-of-mass motion removed) and
    error energy Σ m |Δv|² / Σ m v²."""
    mm = m[None, :, None]
    ke_pred = np.sum(mm * (vel - vel.mean(axis=1, keepdims=True)) ** 2)
    ke_true = np.sum(mm * (true_vel - true_vel.mean(axis=1, keepdims=True)) ** 2)
    return {
        f"{name}_pos_A": float(np.linalg.norm(disp - true_disp, axis=-1).mean()),
        f"{name}_ke_bias": float(ke_pred / ke_true - 1.0),
        f"{name}_error_energy": float(
            np.sum(mm * (vel - true_vel) ** 2) / np.sum(mm * true_vel**2)
        ),
    }

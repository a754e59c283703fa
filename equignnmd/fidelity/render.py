"""The fidelity report (:mod:`equignnmd.fidelity`): plots per temperature, ``fidelity.md`` and
``fidelity.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .. import plots
from ..io import json_safe, write_atomic
from ..units import fs_to_ps


def plot_block(out: Path, block: dict) -> None:
    """The plots of one temperature's ``block`` into ``out``: the rows' curves (keys with
    ``_``) are taken out of the rows, the file names put in ``block["plots"]``."""
    tag = f"{int(round(block['temperature_K']))}K"
    atoms = block["atoms"]
    energy, temp = {}, {}
    for row in block["nve"]:
        t, e = row.pop("_energy")
        if len(t):
            energy[row["run"]] = (t, 1000.0 * (np.asarray(e) - e[0]) / atoms)
        temp[row["run"]] = row.pop("_trace")
    files = {
        "nve_temperature": plots.plot_temperature(out / f"nve_temperature_{tag}.png", temp).name,
        "nve_energy": plots.plot_energy(
            out / f"nve_energy_{tag}.png", energy, ylabel="E(t) − E(0) (meV/atom)"
        ).name,
    }
    vd, rd, ms = {}, {}, {}
    for row in block["nvt"]:
        key = f"{row['run']} [{row['thermostat']}, {row['stride_fs']:g} fs]"
        if "_vdos" in row:
            vd[key] = row.pop("_vdos")
        if "_rdf" in row:
            rd[key] = row.pop("_rdf")
        if "_msd" in row:
            msd = row.pop("_msd")
            ms[key] = (fs_to_ps(np.arange(len(msd)) * row["stride_fs"]), msd)
    if vd:
        files["nvt_vdos"] = plots.plot_vdos(out / f"nvt_vdos_{tag}.png", vd).name
        files["nvt_rdf"] = plots.plot_rdf(out / f"nvt_rdf_{tag}.png", rd).name
        files["nvt_msd"] = plots.plot_msd(out / f"nvt_msd_{tag}.png", ms).name
    block["plots"] = files


def _f(x, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec)


def render_fidelity(result: dict) -> str:
    """``fidelity.md`` of :func:`~equignnmd.fidelity.fidelity`'s result: per temperature, a
    table per part."""
    cfg = result["config"]
    material = result.get("material") or {"element": "Al", "lattice": "fcc"}
    composition = material.get("composition")  # an alloy's {element: fraction}
    name = (
        "".join(f"{e}{x:g}" for e, x in composition.items()) if composition else material["element"]
    )
    # a dataset's or a checkpoint's own reference and material (older results: the field)
    origin = result.get("reference_origin") or (
        f"dataset {cfg['reference']}" if cfg.get("reference") else ""
    )
    if origin:
        what = (
            f"{material['lattice']} {name} (the reference of {origin}: {result.get('reference')})"
        )
    else:
        what = f"FCC Al ({result.get('reference') or 'Mendelev EAM'} reference)"
    alloy = ""
    if composition:
        counts = ", ".join(f"{n} {e}" for e, n in material["counts"].items())
        masses = ", ".join(f"{e} {m:g}" for e, m in material["masses_amu"].items())
        alloy = (
            f" A random substitutional alloy: {counts}, placed on the sites with seed "
            f"{cfg['seed']}; every mass-weighted score (temperatures, VDOS, MSD, site drift, "
            f"long-wave T, one-step KE) weighs each atom by its own mass ({masses} amu); the "
            "RDF is the total one (all pairs, whatever their elements); FCC end counts every "
            "atom."
        )
    lines = [
        f"# Fidelity: {result['model']['arch']} ({result['model']['checkpoint']})",
        "",
        f"{result['atoms']} atoms of {what}, equilibrated at each "
        f"temperature by the reference (NPT 0 bar, then NVT in the average box).{alloy} Model "
        f"trained at {result['model']['train_temperatures_K']} K, strides "
        f"{result['model']['train_strides_fs']} fs. Surrogate energy source: {cfg['energy']}. "
        "Scores from fewer than "
        f"{cfg['min_frames']} frames are shown as –.",
        "",
    ]
    for block in result["temperatures"]:
        T = block["temperature_K"]
        lines += [f"## {T:g} K (box {block['box_A']:.3f} Å)", "", "### NVE: total energy", ""]
        lines += [
            "| run | step (fs) | ps | drift (meV/atom/ps) | ΔE (meV/atom) | T start → end (K) "
            "| long-wave T / T | stopped |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in block["nve"]:
            lines.append(
                f"| {r['run']} | {r['step_fs']:g} | {r['duration_ps']:.2f} | "
                f"{_f(r['drift_meV_per_atom_ps'], '.4f')} | "
                f"{_f(r['energy_change_meV_per_atom'], '.3f')} | "
                f"{r['temperature_start_K']:.0f} → {r['temperature_end_K']:.0f} | "
                f"{_f(r.get('long_wave_T_ratio'), '.2f')} | {'yes' if r.get('stopped') else ''} |"
            )
        pairs_fs = cfg.get("reference_fs", 1.0)  # reports written before the field: 1 fs
        lines += ["", f"### One step (pairs of a {pairs_fs:g}-fs NVE reference run)", ""]
        lines += [
            "| Δt (fs) | pairs | model pos (Å) | zero | ballistic | Taylor | model KE bias "
            "| Taylor KE bias | model error energy | Taylor error energy "
            "| reversibility (Å / rel. v) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in block["onestep"]:
            lines.append(
                f"| {r['stride_fs']:g} | {r['pairs']} | {r['model_pos_A']:.5f} | "
                f"{r['zero_pos_A']:.4f} | {r['ballistic_pos_A']:.5f} | {r['taylor_pos_A']:.5f} | "
                f"{r['model_ke_bias']:+.2%} | {r['taylor_ke_bias']:+.2%} | "
                f"{r['model_error_energy']:.2e} | {r['taylor_error_energy']:.2e} | "
                f"{r['reversibility_pos_A']:.5f} / {r['reversibility_vel_rel']:.4f} |"
            )
        lines += ["", "### NVT", ""]
        lines += [
            "| run | thermostat | Δt (fs) | frames | T mean ± std (K) | canonical std | RDF L1 "
            "| VDOS overlap (all / last ¼) | VDOS < 2 THz | mean ν (THz) | MSD plateau (Å²) "
            "| site drift (Å) | FCC end | long-wave T / T | stopped |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in block["nvt"]:
            lines.append(
                f"| {r['run']} | {r['thermostat']} | {r['stride_fs']:g} | {r['frames']} | "
                f"{r['temperature_mean_K']:.1f} ± {r['temperature_std_K']:.1f} | "
                f"{r['canonical_std_K']:.1f} | {_f(r.get('rdf_l1'))} | "
                f"{_f(r.get('vdos_overlap'), '.2f')} / "
                f"{_f(r.get('vdos_overlap_last_quarter'), '.2f')} | "
                f"{_f(r.get('vdos_low_weight'), '.3f')} | {_f(r.get('vdos_mean_THz'), '.2f')} | "
                f"{_f(r.get('msd_plateau_A2'), '.4f')} | {_f(r.get('site_drift_A'), '.4f')} | "
                f"{_f(r.get('fcc_fraction_end'), '.2f')} | "
                f"{_f(r.get('long_wave_T_ratio'), '.2f')} | {'yes' if r.get('stopped') else ''} |"
            )
        lines += ["", "Plots: " + ", ".join(f"`{v}`" for v in block["plots"].values()), ""]
        stops = [r for r in block["nve"] + block["nvt"] if r.get("stopped")]
        for r in stops:
            lines.append(f"- {r['run']}: {r['stopped']}")
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, result: dict) -> None:
    """``fidelity.json`` (private keys left out, NaN as null) and ``fidelity.md`` into ``out``."""
    text = json.dumps(json_safe(result, skip_private=True), indent=2, allow_nan=False)
    write_atomic(out / "fidelity.json", text + "\n")
    write_atomic(out / "fidelity.md", render_fidelity(result) + "\n")

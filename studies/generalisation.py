"""Is a force-free model faithful beyond bulk crystal? Rollouts against LAMMPS from the same
states of a states dataset (bulk, defects, slabs, liquid), held-out ones included.

Issue 34 asks for one aluminium model faithful on bulk, point defects, free surfaces and
liquid. For every named trajectory of a dataset made by ``equignnmd generate`` with
``states`` (``configs/data/diverse.yaml``), the frame at ``--start-fraction`` of the file (the
first frame the trainer did not train on: the validation part of a trained state, or any frame
of a held-out one) starts:

- LAMMPS (the dataset's EAM, 1-fs velocity Verlet, CSVR at the state's temperature,
  τ = 100 strides) with two seeds: the first is the reference, the second the calibration row
  (seed against seed: what "as good as the reference" means for each score);
- every ``--checkpoint``, each with every ``--energy`` source ("none": the model alone;
  "model": its own energy head, FlashMD-style rescaling), the same thermostat, a frame every
  stride.

Scores (:func:`equignnmd.fidelity.score.nvt_scores` against the first LAMMPS seed): mean T,
RDF L1 (second half), VDOS overlap (last quarter), MSD plateau; for a liquid the diffusion
coefficient (MSD slope over the second half / 6); for a slab the atoms more than 2 Å beyond
the farthest any atom of the LAMMPS run got from the slab's mid-plane; the fraction of atoms
the checkpoint's novelty box flags at the start. LAMMPS runs are cached in ``--out`` and the
results file is written after every run, so an interrupted study continues where it stopped::

    python studies/generalisation.py --data data/diverse5 --ps 5 \\
        --checkpoint pretrained:equivariant-al --checkpoint runs/v3/best.pt --out runs/gen

(results and tables: docs/studies/2026-12-07-issue-34-generalisation.md).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import equignnmd
from equignnmd import analysis
from equignnmd.data.format import open_trajectories, read_index
from equignnmd.fidelity.run import lammps_nvt, make_config, surrogate_run
from equignnmd.fidelity.score import nvt_scores
from equignnmd.materials import ALUMINIUM
from equignnmd.units import fs_to_ps

DEFAULT_STATES = (
    "bulk_T0350K",
    "bulk_T0650K",
    "vacancy_T0800K",
    "divacancy_T0300K",
    "slab100_T0300K",
    "slab110_T0600K",
    "liquid_T1100K",
)
ESCAPE_MARGIN_A = 2.0
"""An atom has left a slab when it is this far beyond the farthest LAMMPS atom (Å)."""


def start_frame(root: Path, stem: str, fraction: float) -> tuple[dict, dict]:
    """The state at ``fraction`` of trajectory ``stem`` of dataset ``root`` and its index
    entry: positions (N, 3) Å, velocities (N, 3) Å/ps, cell (3, 3) Å."""
    meta = read_index(root)
    for entry, tr in zip(meta["trajectories"], open_trajectories(root)):
        if Path(entry["file"]).stem == stem:
            k = min(int(fraction * tr.n_frames), tr.n_frames - 1)
            frame = {key: tr.read(key, k) for key in ("positions", "velocities", "cell")}
            return frame, entry
    names = ", ".join(Path(e["file"]).stem for e in meta["trajectories"])
    raise SystemExit(f"dataset {root}: no trajectory {stem!r}; it has {names}")


def slab_normal_extent(pos: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """(F, N) distance (Å) of every atom from the slab's mid-plane along the cell's third
    axis (the vacuum direction of the generated slabs), per frame."""
    normal = np.cross(cell[0], cell[1])
    normal /= np.linalg.norm(normal)
    h = pos @ normal
    return np.abs(h - np.median(h, axis=1, keepdims=True))


def diffusion_A2_per_ps(pos: np.ndarray, stride_fs: float) -> float:
    """Self-diffusion coefficient (Å²/ps) from the MSD (first frame as origin, centre of
    mass removed) over the second half of the run; NaN below 20 frames."""
    if len(pos) < 20:
        return math.nan
    _, msd = analysis.msd(pos, np.full(pos.shape[1], ALUMINIUM.mass_amu), origins="first")
    t = fs_to_ps(stride_fs) * np.arange(len(msd))
    half = slice(len(msd) // 2, len(msd))
    return float(np.polyfit(t[half], msd[half], 1)[0] / 6.0)


def score(run: dict, ref: dict, frame: dict, T: float, stride_fs: float, stem: str) -> dict:
    """The scores of one run against the reference LAMMPS run (module doc)."""
    out = nvt_scores(run, ref, T, stride_fs, frame["cell"], ALUMINIUM, min_frames=40)
    out = {k: v for k, v in out.items() if not k.startswith("_")}
    if stem.startswith("liquid"):
        out["diffusion_A2_ps"] = diffusion_A2_per_ps(run["positions"], stride_fs)
    if stem.startswith("slab"):
        reach = slab_normal_extent(ref["positions"], frame["cell"]).max()
        extent = slab_normal_extent(run["positions"], frame["cell"])
        out["escaped_atoms"] = int((extent.max(axis=0) > reach + ESCAPE_MARGIN_A).sum())
    return out


def lammps_run(cfg, frame, T, stride_fs, seed, cache: Path) -> dict:
    """LAMMPS CSVR frames from ``frame`` (cached as ``cache``.npz)."""
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    run = lammps_nvt(cfg, ALUMINIUM, frame, T, stride_fs, "csvr", seed)
    np.savez(
        cache.with_suffix(".tmp.npz"), positions=run["positions"], velocities=run["velocities"]
    )
    cache.with_suffix(".tmp.npz").replace(cache)
    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="states dataset (equignnmd generate)")
    p.add_argument("--checkpoint", action="append", required=True, help="repeatable")
    p.add_argument("--energy", default="none,model", help="energy sources, comma-separated")
    p.add_argument("--states", default=",".join(DEFAULT_STATES), help="trajectory names")
    p.add_argument("--ps", type=float, default=5.0, help="NVT length, ps")
    p.add_argument("--stride-fs", type=float, default=20.0, help="surrogate stride, fs")
    p.add_argument("--start-fraction", type=float, default=0.8, help="start frame, of file")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", default="runs/generalisation", help="folder: cache and results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}

    def save():
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(results_path)

    stride = args.stride_fs
    models = {c: equignnmd.load_checkpoint(c) for c in args.checkpoint}
    for stem in args.states.split(","):
        frame, entry = start_frame(Path(args.data), stem, args.start_fraction)
        T = float(entry["temperature_K"])
        row = results.setdefault(stem, {"temperature_K": T, "test": bool(entry.get("test"))})
        base = make_config("default", nvt_ps=args.ps, energy="none")
        ref = lammps_run(base, frame, T, stride, 101, out / f"lammps_{stem}_seed101.npz")
        if "LAMMPS seed 2" not in row:
            t0 = time.perf_counter()
            other = lammps_run(base, frame, T, stride, 202, out / f"lammps_{stem}_seed202.npz")
            row["LAMMPS seed 2"] = score(other, ref, frame, T, stride, stem)
            row["LAMMPS seed 2"]["wall_s"] = time.perf_counter() - t0
            save()
        for name, model in models.items():
            for energy in args.energy.split(","):
                label = f"{name}, energy {energy}"
                if label in row:
                    continue
                cfg = make_config("default", nvt_ps=args.ps, energy=energy)
                steps = int(round(args.ps * 1000.0 / stride))
                t0 = time.perf_counter()
                run = surrogate_run(model, cfg, ALUMINIUM, frame, T, stride, "csvr", steps, 10**9)
                s = score(run, ref, frame, T, stride, stem)
                s.update(
                    wall_s=time.perf_counter() - t0,
                    stopped=run["stopped"],
                    steps_completed=run["steps_completed"],
                )
                box = getattr(model, "novelty_box", None)
                if box is not None:
                    flagged = box.outside(frame["positions"], frame["cell"])
                    s["novelty_start"] = float(flagged.double().mean())
                row[label] = s
                save()
                print(
                    f"{stem:18s} {label:48s} T {s['temperature_mean_K']:7.1f} "
                    f"RDF {s.get('rdf_l1', math.nan):.3f} "
                    f"VDOS¼ {s.get('vdos_overlap_last_quarter', math.nan):.3f} "
                    f"stopped {run['stopped']}",
                    flush=True,
                )
    (out / "table.md").write_text(render(results))
    print(render(results))
    return 0


def _fmt(x, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


COLUMNS = (  # (header, key, format)
    ("T K", "temperature_mean_K", ".1f"),
    ("RDF L1", "rdf_l1", ".3f"),
    ("VDOS ¼", "vdos_overlap_last_quarter", ".3f"),
    ("MSD plateau Å²", "msd_plateau_A2", ".3f"),
    ("D Å²/ps", "diffusion_A2_ps", ".3f"),
    ("escaped", "escaped_atoms", "d"),
    ("novelty at 0", "novelty_start", ".3f"),
)


def render(results: dict) -> str:
    """One markdown table: a row per state and run."""
    head = ["state", "run", *(c[0] for c in COLUMNS), "stopped"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stem, row in results.items():
        where = f"{stem} ({row['temperature_K']:.0f} K{', held out' if row['test'] else ''})"
        for label, s in row.items():
            if isinstance(s, dict):
                cells = [_fmt(s.get(key), spec) for _, key, spec in COLUMNS]
                lines.append(
                    f"| {where} | {label} | {' | '.join(cells)} | {s.get('stopped') or ''} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
